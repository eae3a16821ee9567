"""The console's words in French and English: chosen by a cookie (the switch), else Accept-Language."""

from __future__ import annotations

from starlette.requests import Request

from geofence.service.console.session import LANG_COOKIE

LANGUAGES = ("fr", "en")

# key: (English, French)
WORDS: dict[str, tuple[str, str]] = {
    'title': ('Geofence console', 'Console géorepérage'),
    'nav': ('Console sections', 'Sections de la console'),
    'zones': ('Zones', 'Zones'),
    'campaigns': ('Campaigns', 'Campagnes'),
    'live': ('Live', 'En direct'),
    'results': ('Results', 'Résultats'),
    'people': ('People', 'Clients'),
    'sign_in': ('Sign in', 'Se connecter'),
    'sign_out': ('Sign out', 'Se déconnecter'),
    'api_key': ('Admin API key', "Clé API d'administration"),
    'bad_key': ('This key is not a valid admin key.', "Cette clé n'est pas une clé d'administration valide."),
    'search': ('Search by name', 'Rechercher par nom'),
    'draw_circle': ('Draw a circle', 'Tracer un cercle'),
    'draw_polygon': ('Draw a polygon', 'Tracer un polygone'),
    'place_store': ('Place a store', 'Placer un magasin'),
    'radius_m': ('Radius (m)', 'Rayon (m)'),
    'name': ('Name', 'Nom'),
    'tags': ('Tags (; separated)', 'Étiquettes (séparées par ;)'),
    'sizing': ('Sizing', 'Dimension'),
    'walk5': ('5 min on foot', '5 min à pied'),
    'car5': ('5 min by car', '5 min en voiture'),
    'explicit': ('Explicit radius', 'Rayon explicite'),
    'save': ('Save', 'Enregistrer'),
    'delete': ('Delete', 'Supprimer'),
    'cancel': ('Cancel', 'Annuler'),
    'import': ('Import zones (CSV or GeoJSON)', 'Importer des zones (CSV ou GeoJSON)'),
    'file': ('File', 'Fichier'),
    'import_done': ('Imported', 'Importées'),
    'errors': ('Errors', 'Erreurs'),
    'line': ('Line', 'Ligne'),
    'reason': ('Reason', 'Motif'),
    'basemap_off': (
        'No basemap reachable: zones are drawn on a plain background.',
        "Aucun fond de carte joignable : les zones s'affichent sur un fond uni.",
    ),
    'click_map': (
        'Click the map to place the centre or the vertices; finish a polygon with its first point.',
        (
            'Cliquez sur la carte pour placer le centre ou les sommets ; '
            'fermez un polygone sur son premier point.'
        ),
    ),
    'zone_list': ('Zones', 'Zones'),
    'edit': ('Edit', 'Modifier'),
    'new_campaign': ('New campaign', 'Nouvelle campagne'),
    'campaign': ('Campaign', 'Campagne'),
    'status': ('Status', 'Statut'),
    'channel': ('Channel', 'Canal'),
    'trigger_zones': ('Trigger zones (ids, ; separated)', 'Zones déclencheuses (ids, séparés par ;)'),
    'trigger_tags': ('Trigger tags (; separated)', 'Étiquettes déclencheuses (séparées par ;)'),
    'events': ('Events', 'Événements'),
    'audience': ('Audience', 'Audience'),
    'message': ('Message', 'Message'),
    'locale': ('Locale', 'Langue'),
    'title_field': ('Title', 'Titre'),
    'body': ('Body', 'Texte'),
    'sms_length': ('SMS length', 'Longueur SMS'),
    'segments': ('segments', 'segments'),
    'optout': ('Opt-out mention', 'Mention STOP'),
    'window': ('Weekly send window (store time)', 'Créneaux hebdomadaires (heure du magasin)'),
    'forbidden': ('hours the law forbids for SMS', 'heures interdites par la loi pour les SMS'),
    'caps': ('Caps', 'Plafonds'),
    'cooldown_h': ('Cooldown per customer (hours)', 'Délai par client (heures)'),
    'max_per_day': ('Max per day', 'Maximum par jour'),
    'holdout': ('Holdout share (0–1)', 'Part du groupe témoin (0–1)'),
    'starts': ('Starts', 'Début'),
    'ends': ('Ends', 'Fin'),
    'dry_run': ('Dry run', 'Simulation'),
    'recorded': ('Over recorded events', 'Sur les événements enregistrés'),
    'trace': ('Over a GPX trace', 'Sur une trace GPX'),
    'run': ('Run', 'Lancer'),
    'decision': ('Decision', 'Décision'),
    'pause': ('Pause', 'Pause'),
    'resume': ('Resume', 'Reprendre'),
    'zone_events': ('Zone events', 'Événements de zone'),
    'decisions': ('Decisions', 'Décisions'),
    'sent': ('sent', 'envoyés'),
    'delivered': ('delivered', 'remis'),
    'skipped': ('skipped', 'écartés'),
    'visits': ('visits', 'visites'),
    'uplift': ('uplift', 'gain'),
    'deliveries': ('Deliveries', 'Envois'),
    'optouts': ('Opt-outs', 'Désinscriptions'),
    'search_people': ('Customer id or phone number', 'Id client ou numéro de téléphone'),
    'consent_history': ('Consent history', 'Historique des consentements'),
    'language': ('Language', 'Langue'),
    'when': ('When', 'Quand'),
    'customer': ('Customer', 'Client'),
    'phone': ('Phone (masked)', 'Téléphone (masqué)'),
    'purpose': ('Purpose', 'Finalité'),
    'source': ('Source', 'Source'),
    'granted': ('Granted', 'Accordé'),
    'weekday': ('Day', 'Jour'),
    'invalid': ('Invalid', 'Invalide'),
    'saved': ('Saved', 'Enregistré'),
    'zone': ('Zone', 'Zone'),
    'kind': ('Kind', 'Type'),
    'device': ('Device', 'Appareil'),
    'none': ('Nothing yet', "Rien pour l'instant"),
    'stats_window': ('Attribution window (hours)', "Fenêtre d'attribution (heures)"),
    'as_of': ('As of', 'Au'),
    'walk5_streets': ('5 min on foot, by the streets', '5 min à pied, par les rues'),
    'car5_streets': ('5 min by car, by the streets', '5 min en voiture, par les rues'),
    'definition': ('Definition', 'Définition'),
    'csrf': (
        'The form expired: reload the page and try again.',
        'Le formulaire a expiré : rechargez la page et réessayez.',
    ),
}
MESSAGES: dict[str, dict[str, str]] = {
    "en": {key: en for key, (en, _fr) in WORDS.items()},
    "fr": {key: fr for key, (_en, fr) in WORDS.items()},
}


def language_of(request: Request) -> str:
    """The switch's choice, else the first supported language of Accept-Language, else English."""
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    weighted: list[tuple[float, str]] = []
    for part in request.headers.get("accept-language", "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        weighted.append((q, tag.strip().lower()[:2]))
    for _q, lang in sorted(weighted, key=lambda t: -t[0]):
        if lang in LANGUAGES:
            return lang
    return "en"


def translator(lang: str) -> dict[str, str]:
    return MESSAGES[lang if lang in LANGUAGES else "en"]
