"""The one typed configuration object.

Sources, lowest precedence first: built-in defaults, the local stack's
``stack.json`` (written by ``retention local up``), a TOML file named by
``RETENTION_CONFIG``, then ``RETENTION_*`` environment variables.  A bad value
raises :class:`ConfigError` naming the variable, at start-up.

Each setting is declared once, in :data:`SETTINGS`; loading, :meth:`Config.describe`,
``retention config --list`` and docs/configuration.md's table derive from it.
Import every name from here; the modules hold one concern each:

- ``kinds``: how a value is parsed, validated and shown (``Duration``, ``Steps``,
  ``Secret``, ...), :class:`ConfigError` and :func:`redact`;
- ``settings``: :class:`Config`, :class:`Setting` and the :data:`SETTINGS` table;
- ``topics``: :class:`Topics`, the topic names;
- ``defaults``: the defaults computed rather than written (the Redis prefix from
  the app id, the local stack's home);
- ``loading``: :func:`load_config`, :func:`build_config` and the rules that involve
  more than one setting.
"""

from streams.config.defaults import (
    DEFAULT_APP_ID,
    DEFAULT_REDIS_PREFIX,
    default_home,
    default_redis_prefix,
)
from streams.config.kinds import (
    MAX_LADDER_STEPS,
    Choice,
    ConfigError,
    Directory,
    Duration,
    Flag,
    Host,
    HostPorts,
    Instant,
    Kind,
    Number,
    OptionalText,
    RedisUrl,
    Secret,
    Steps,
    Text,
    TopicName,
    Whole,
    redact,
)
from streams.config.loading import (
    MIN_STREAM_HEARTBEAT,
    build_config,
    load_config,
    load_stack_file,
)
from streams.config.settings import (
    BY_KEY,
    EXACTLY_ONCE_REFUSED,
    SETTINGS,
    Config,
    KafkaSecurity,
    Setting,
)
from streams.config.topics import MAX_TOPIC_NAME, Topics

__all__ = [
    "BY_KEY",
    "DEFAULT_APP_ID",
    "DEFAULT_REDIS_PREFIX",
    "EXACTLY_ONCE_REFUSED",
    "MAX_LADDER_STEPS",
    "MAX_TOPIC_NAME",
    "MIN_STREAM_HEARTBEAT",
    "SETTINGS",
    "Choice",
    "Config",
    "ConfigError",
    "Directory",
    "Duration",
    "Flag",
    "Host",
    "HostPorts",
    "Instant",
    "KafkaSecurity",
    "Kind",
    "Number",
    "OptionalText",
    "RedisUrl",
    "Secret",
    "Setting",
    "Steps",
    "Text",
    "TopicName",
    "Topics",
    "Whole",
    "build_config",
    "default_home",
    "default_redis_prefix",
    "load_config",
    "load_stack_file",
    "redact",
]
