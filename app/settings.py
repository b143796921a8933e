"""Configuration from the environment (and ``NAME_FILE`` files for secrets)."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

SECRET_FIELDS = (
    "relay_ingest_tokens",
    "relay_admin_token",
    "zendesk_api_token",
    "zendesk_oauth_token",
    "zendesk_password",
    "yotpo_access_token",
    "yotpo_api_key",
    "yotpo_secret",
    "relay_signing_secrets",
)

# Old names still read, each with the name that replaces it (a warning is logged at start-up).
DEPRECATED = {"yotpo_api_key": "yotpo_access_token"}

LOG_CHOICES = {
    "relay_log_level": ("debug", "info", "warning", "error"),
    "relay_log_format": ("json", "console"),
}


class SecretFileSource(PydanticBaseSettingsSource):
    """Reads ``NAME_FILE`` (a path) for each secret, as Kubernetes and Docker mount them."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        path = os.environ.get(f"{field_name.upper()}_FILE")
        if field_name not in SECRET_FIELDS or not path:
            return None, field_name, False
        try:
            return Path(path).read_text(encoding="utf-8").strip(), field_name, False
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{field_name.upper()}_FILE={path}: cannot read it ({exc})") from None

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


class Settings(BaseSettings):
    """Every setting of the relay; names are the public environment variables, upper-cased."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    relay_mappings_dir: Path = Path("./mappings")
    relay_store: str = "sqlite:///./data/relay.db"
    relay_redis_prefix: str = "aep-relay"
    relay_ingest_tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    relay_allow_unauthenticated: bool = False
    relay_admin_token: SecretStr | None = None
    relay_dry_run: bool | None = None
    relay_max_body_bytes: int = Field(default=1_048_576, gt=0)
    relay_max_pending: int = Field(default=100_000, gt=0)
    relay_max_attempts: int = Field(default=30, gt=0)
    relay_max_age: float = Field(default=86_400.0, gt=0)
    relay_retry_base_seconds: float = Field(default=1.0, gt=0)
    relay_retry_cap_seconds: float = Field(default=3_600.0, gt=0)
    relay_lease_seconds: float = Field(default=60.0, gt=0)
    # Seconds between checks of the mappings folder for changes (0: reload on SIGHUP only).
    relay_reload_interval: float = Field(default=5.0, ge=0)
    relay_idempotency_ttl: float = Field(default=86_400.0, gt=0)
    relay_dispatch_concurrency: int = Field(default=16, gt=0)
    relay_shutdown_grace: float = Field(default=10.0, ge=0)
    relay_retention_seconds: float = Field(default=7 * 86_400.0, gt=0)
    # Outage answers in a row that open a destination's circuit (0: never), and seconds between its probes.
    relay_circuit_failures: int = Field(default=5, ge=0)
    relay_circuit_probe_seconds: float = Field(default=30.0, gt=0)
    relay_sqlite_synchronous: str = "FULL"
    relay_log_level: str = "info"
    relay_log_format: str = "json"
    relay_max_batch_events: int = Field(default=1000, gt=0)
    relay_max_json_depth: int = Field(default=64, gt=0, le=512)  # deeper would strain Python's recursion
    relay_max_string_length: int = Field(default=65_536, gt=0)
    # Identities in one event's identity map (its own and the batch's request-level ones).
    relay_max_identities_per_namespace: int = Field(default=100, gt=0)
    relay_max_identity_namespaces: int = Field(default=50, gt=0)
    relay_max_identities: int = Field(default=1000, gt=0)
    relay_signing_secrets: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # Signatures of the body alone (without method and path) are accepted before this day (UTC).
    relay_signing_body_only_until: date = date(2027, 6, 30)
    # Seconds a request's whole body may take to arrive once its headers have (408 after).
    relay_body_timeout: float = Field(default=10.0, gt=0)
    # Connections (and requests in flight) uvicorn takes before answering 503 to new requests.
    relay_max_connections: int = Field(default=256, gt=0)

    # uvicorn's name and default: proxies whose X-Forwarded-Proto sets the scheme of redirects
    forwarded_allow_ips: str = "127.0.0.1"
    # Draft previews run in a worker process: seconds each may take, and memory it may add.
    relay_draft_timeout: float = Field(default=3.0, gt=0)
    relay_draft_memory_bytes: int = Field(default=268_435_456, ge=16_777_216)

    zendesk_subdomain: str | None = None
    zendesk_email: str | None = None
    zendesk_api_token: SecretStr | None = None
    zendesk_oauth_token: SecretStr | None = None
    zendesk_password: SecretStr | None = None
    zendesk_base_url: str | None = None
    zendesk_rate_limit_per_minute: int = Field(default=250, gt=0)
    zendesk_connect_timeout: float = Field(default=5.0, gt=0)
    zendesk_read_timeout: float = Field(default=10.0, gt=0)

    yotpo_store_id: str | None = None
    # A pre-issued access token (sent as X-Yotpo-Token); YOTPO_API_KEY is its deprecated name.
    yotpo_access_token: SecretStr | None = None
    yotpo_api_key: SecretStr | None = None
    yotpo_secret: SecretStr | None = None
    yotpo_base_url: str | None = None
    yotpo_rate_limit_per_minute: int = Field(default=300, gt=0)  # 5 requests/second per store
    yotpo_rate_limit_per_second: float = Field(default=5.0, gt=0)  # no second holds more
    # Not published in any copy we could read: the reference's best guess, to check on a live store.
    yotpo_events_method: str = "POST"
    yotpo_events_path: str = "/core/v3/stores/{store_id}/custom_events"
    yotpo_token_path: str = "/core/v3/stores/{store_id}/access_tokens"
    yotpo_connect_timeout: float = Field(default=5.0, gt=0)
    yotpo_read_timeout: float = Field(default=10.0, gt=0)

    @field_validator("relay_ingest_tokens", "relay_signing_secrets", mode="before")
    @classmethod
    def _split_tokens(cls, value: Any) -> Any:
        if isinstance(value, str):  # comma-separated; a *_FILE may also hold one per line
            return [token.strip() for token in value.replace("\n", ",").split(",") if token.strip()]
        return value

    @field_validator("relay_log_level", "relay_log_format", mode="after")
    @classmethod
    def _known_log_choice(cls, value: str, info: ValidationInfo) -> str:
        allowed = LOG_CHOICES[str(info.field_name)]
        if value.lower() not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value.lower()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, SecretFileSource(settings_cls), dotenv_settings)

    def deprecated_in_use(self) -> list[tuple[str, str]]:
        """``(old, new)`` environment names of each deprecated setting that is set."""
        return [
            (old.upper(), new.upper()) for old, new in DEPRECATED.items() if getattr(self, old) is not None
        ]

    def secret_values(self) -> list[str]:
        """Every configured secret in clear, so the log redactor can mask it anywhere."""
        values = [token.get_secret_value() for token in self.relay_ingest_tokens]
        for name in SECRET_FIELDS[1:]:
            secret = getattr(self, name)
            for item in secret if isinstance(secret, list) else [secret]:
                if isinstance(item, SecretStr) and item.get_secret_value():
                    values.append(item.get_secret_value())
        return values


class ConfigError(ValueError):
    """A setting that cannot work; the relay refuses to start and says which."""
