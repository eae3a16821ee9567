"""Column helpers shared by the table modules: one definition, in ``campaigns.storage.columns``."""

from campaigns.storage.columns import UtcDateTime, as_utc, json_column, new_id, utc_column

__all__ = ["UtcDateTime", "as_utc", "json_column", "new_id", "utc_column"]
