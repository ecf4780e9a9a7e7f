"""The real Apache Kafka broker (4.4.0, KRaft, single node) from its Maven Central jars.

``pom.xml`` (package data beside this module) names the broker and its runtime dependencies;
``ensure_jars()`` runs ``mvn dependency:copy-dependencies`` once into a git-ignored cache.
``start()`` writes a server.properties, formats the KRaft storage (first start only) and runs
``java kafka.Kafka`` on 127.0.0.1::

    >>> broker = start_kafka(Path(".aipulse/kafka"), port=0)   # doctest: +SKIP
    >>> broker.bootstrap                                         # doctest: +SKIP
    '127.0.0.1:40123'

An optional SASL_SSL listener (TLS from a PKCS12 keystore; PLAIN users in its JAAS config,
SCRAM-SHA-256/512 users written into the KRaft metadata at format time) serves clients that
test the security settings (docs/security.md); the PLAINTEXT listener stays for the broker's
own use and for the local stack::

    >>> listener = SaslSslListener(keystore=Path("broker.p12"), keystore_password="pw",
    ...                            users={"app": "app-secret"})                 # doctest: +SKIP
    >>> broker = start_kafka(Path("/tmp/k"), sasl_ssl=listener)                 # doctest: +SKIP
    >>> broker.sasl_ssl_bootstrap                                               # doctest: +SKIP
    '127.0.0.1:40125'
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from aipulse_stream.config import LocalStackConfig

from .process import StackError, check_port_free, free_port, port_open, spawn, wait_until

POM = Path(__file__).resolve().parent / "pom.xml"  # package data: travels with the wheel
REPO_ROOT = Path(__file__).resolve().parents[2]
# A checkout keeps its jars in its git-ignored .cache; an installed package in the user's cache.
DEFAULT_JAR_CACHE = (REPO_ROOT / ".cache" / "kafka-jars" if (REPO_ROOT / "services" / "aipulse_local").is_dir()
                     else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aipulse" / "kafka-jars")
KAFKA_HEAP = "-Xmx768m"           # one broker for tests and demos; it idles far below this
START_TIMEOUT_S = 90
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class SaslSslListener:
    """A SASL_SSL listener: the broker's TLS identity and the users it accepts (every mechanism).

    ``keystore`` is a PKCS12 file holding the broker's key and certificate chain. SCRAM users
    are written at the first format of the data folder only (KRaft keeps them in its metadata).
    """

    keystore: Path
    keystore_password: str
    users: Mapping[str, str] = field(default_factory=dict)   # user -> password
    port: int = 0                                            # 0 = a free port


@dataclass
class KafkaProcess:
    pid: int
    host: str
    port: int
    controller_port: int
    log: Path
    sasl_ssl_port: int | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def sasl_ssl_bootstrap(self) -> str | None:
        return f"{self.host}:{self.sasl_ssl_port}" if self.sasl_ssl_port else None


def jar_cache() -> Path:
    return LocalStackConfig.from_env().kafka_jars or DEFAULT_JAR_CACHE


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise StackError(f"`{tool}` is not installed: {hint}")
    return path


def ensure_jars(quiet: bool = True) -> Path:
    """Resolve the broker jars into the cache (a no-op once they are there)."""
    cache = jar_cache()
    if cache.is_dir() and any(cache.glob("kafka_2.13-*.jar")) and any(cache.glob("kafka-storage-*.jar")):
        return cache
    mvn = _require("mvn", "install Maven (apt-get install maven) to fetch the Kafka broker jars")
    _require("java", "install a Java 17+ runtime (apt-get install openjdk-17-jre-headless)")
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [mvn, "-B", "-f", str(POM), "dependency:copy-dependencies",
           f"-DoutputDirectory={cache}", "-DincludeScope=runtime"]
    if quiet:
        cmd.insert(1, "-q")
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        tail = (res.stdout + res.stderr).strip().splitlines()[-3:]
        raise StackError("mvn could not fetch the Kafka jars from Maven Central: " + " | ".join(tail))
    return cache


def _jaas_value(text: str) -> str:
    """Quote a JAAS option value (backslash and double quote escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sasl_ssl_properties(listener: SaslSslListener) -> str:
    plain_users = " ".join(f"user_{u}={_jaas_value(p)}" for u, p in listener.users.items())
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return f"""sasl.enabled.mechanisms={",".join(SASL_MECHANISMS)}
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram}
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}
ssl.keystore.type=PKCS12
ssl.keystore.location={Path(listener.keystore).resolve()}
ssl.keystore.password={listener.keystore_password}
ssl.key.password={listener.keystore_password}
ssl.client.auth=none
"""


def _properties(data_dir: Path, host: str, port: int, cport: int, partitions: int,
                sasl_ssl: SaslSslListener | None = None, sport: int | None = None) -> str:
    listeners = f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}"
    advertised = f"PLAINTEXT://{host}:{port}"
    protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if sasl_ssl is not None:
        listeners += f",SASL_SSL://{host}:{sport}"
        advertised += f",SASL_SSL://{host}:{sport}"
        protocols += ",SASL_SSL:SASL_SSL"
    return f"""# written by aipulse_local.kafka: a single-node KRaft broker for development and tests
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{cport}
listeners={listeners}
advertised.listeners={advertised}
controller.listener.names=CONTROLLER
listener.security.protocol.map={protocols}
inter.broker.listener.name=PLAINTEXT
{_sasl_ssl_properties(sasl_ssl) if sasl_ssl is not None else ""}log.dirs={data_dir / 'logs'}
num.partitions={partitions}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=168
message.max.bytes=4194304
"""


def _log4j2(path: Path) -> Path:
    conf = path / "log4j2.properties"
    conf.write_text(
        "status = error\nappender.console.type = Console\nappender.console.name = STDOUT\n"
        "appender.console.layout.type = PatternLayout\n"
        "appender.console.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = WARN\nrootLogger.appenderRef.stdout.ref = STDOUT\n"
        "logger.kafka.name = kafka.server.KafkaRaftServer\nlogger.kafka.level = INFO\n"
    )
    return conf


def start_kafka(data_dir: Path, port: int = 0, host: str = "127.0.0.1", partitions: int = 4,
                sasl_ssl: SaslSslListener | None = None) -> KafkaProcess:
    """Start a broker whose data lives in `data_dir` (formatted on first use). port 0 = a free port.

    With `sasl_ssl`, the broker also listens for SASL_SSL clients (see :class:`SaslSslListener`).
    """
    java = _require("java", "install a Java 17+ runtime (apt-get install openjdk-17-jre-headless)")
    cache = ensure_jars()
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    props_path = data_dir / "server.properties"
    ports_path = data_dir / "ports"
    sport = None
    if port == 0 and ports_path.exists():
        # Restarting a broker over existing data keeps its ports (the KRaft quorum names them).
        recorded = [int(x) for x in ports_path.read_text().split()]
        port, cport = recorded[:2]
        sport = recorded[2] if len(recorded) > 2 else None
    else:
        port = port or free_port(host)
        cport = free_port(host)
    if sasl_ssl is not None:
        sport = sasl_ssl.port or sport or free_port(host)
        check_port_free(host, sport, "the Kafka SASL_SSL listener", "AIPULSE_KAFKA_PORT")
    else:
        sport = None
    check_port_free(host, port, "Kafka", "AIPULSE_KAFKA_PORT")
    check_port_free(host, cport, "the Kafka controller", "AIPULSE_KAFKA_PORT")
    props_path.write_text(_properties(data_dir, host, port, cport, partitions, sasl_ssl, sport))
    ports_path.write_text(" ".join(str(p) for p in (port, cport, sport) if p))
    log4j = _log4j2(data_dir)
    classpath = f"{cache}/*"
    jvm = [java, KAFKA_HEAP, "-XX:+UseG1GC", "-Djava.awt.headless=true",
           f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]
    log_path = data_dir / "kafka.log"
    if not (data_dir / "logs" / "meta.properties").exists():
        cluster_id = uuid.uuid4().bytes
        cid = base64.urlsafe_b64encode(cluster_id).decode().rstrip("=")
        scram: list[str] = []
        for user, password in (sasl_ssl.users.items() if sasl_ssl is not None else ()):
            for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                scram += ["--add-scram", f"{mech}=[name={user},password={password}]"]
        res = subprocess.run(jvm + ["kafka.tools.StorageTool", "format", f"--cluster-id={cid}", "-c", str(props_path)]
                             + scram, capture_output=True, text=True)
        if res.returncode != 0:
            raise StackError("formatting Kafka storage failed: " + (res.stderr or res.stdout).strip()[-300:])
    pid = spawn(jvm + ["kafka.Kafka", str(props_path)], log_path)
    wait_until(lambda: port_open(host, port) and _ready(f"{host}:{port}"), START_TIMEOUT_S, pid, "Kafka", log_path)
    return KafkaProcess(pid=pid, host=host, port=port, controller_port=cport, log=log_path, sasl_ssl_port=sport)


def _ready(bootstrap: str, options: Mapping | None = None) -> bool:
    """The broker answers metadata requests (a listening port alone is not enough).

    `options`: the client's security arguments (``KafkaSecurity.client_options()``)."""
    try:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, **(options or {}))
        try:
            admin.list_topics()
        finally:
            admin.close()
        return True
    except Exception:
        return False


def ensure_topics(bootstrap: str, topics: dict[str, int], configs: dict[str, dict[str, str]] | None = None,
                  options: Mapping | None = None) -> None:
    """Create the topics that do not exist yet (name -> partitions; configs: name -> topic configs;
    options: the client's security arguments, ``KafkaSecurity.client_options()``)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, **(options or {}))
    except Exception as err:
        raise StackError(f"cannot reach Kafka at {bootstrap}: {err} (start it with `aipulse up` or fix AIPULSE_KAFKA_BOOTSTRAP)") from None
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(name, n, 1, topic_configs=(configs or {}).get(name, {}))
               for name, n in topics.items() if name not in existing]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
