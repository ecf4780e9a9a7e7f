"""The real Apache Kafka broker (4.4.0, KRaft, single node) from its Maven Central jars.

``pom.xml`` (package data beside this module) names the broker and its runtime dependencies;
``ensure_jars()`` runs ``mvn dependency:copy-dependencies`` once into a git-ignored cache.
``start()`` writes a server.properties, formats the KRaft storage (first start only) and runs
``java kafka.Kafka`` on 127.0.0.1::

    >>> broker = start_kafka(Path(".aipulse/kafka"), port=0)   # doctest: +SKIP
    >>> broker.bootstrap                                         # doctest: +SKIP
    '127.0.0.1:40123'
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from .process import StackError, check_port_free, free_port, port_open, spawn, wait_until

POM = Path(__file__).resolve().parent / "pom.xml"  # package data: travels with the wheel
REPO_ROOT = Path(__file__).resolve().parents[2]
# A checkout keeps its jars in its git-ignored .cache; an installed package in the user's cache.
DEFAULT_JAR_CACHE = (REPO_ROOT / ".cache" / "kafka-jars" if (REPO_ROOT / "services" / "aipulse_local").is_dir()
                     else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aipulse" / "kafka-jars")
KAFKA_HEAP = "-Xmx768m"           # one broker for tests and demos; it idles far below this
START_TIMEOUT_S = 90


@dataclass
class KafkaProcess:
    pid: int
    host: str
    port: int
    controller_port: int
    log: Path

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


def jar_cache() -> Path:
    return Path(os.environ.get("AIPULSE_KAFKA_JARS", DEFAULT_JAR_CACHE))


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


def _properties(data_dir: Path, host: str, port: int, cport: int, partitions: int) -> str:
    return f"""# written by aipulse_local.kafka: a single-node KRaft broker for development and tests
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{cport}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir / 'logs'}
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


def start_kafka(data_dir: Path, port: int = 0, host: str = "127.0.0.1", partitions: int = 4) -> KafkaProcess:
    """Start a broker whose data lives in `data_dir` (formatted on first use). port 0 = a free port."""
    java = _require("java", "install a Java 17+ runtime (apt-get install openjdk-17-jre-headless)")
    cache = ensure_jars()
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    props_path = data_dir / "server.properties"
    ports_path = data_dir / "ports"
    if port == 0 and ports_path.exists():
        # Restarting a broker over existing data keeps its ports (the KRaft quorum names them).
        port, cport = (int(x) for x in ports_path.read_text().split())
    else:
        port = port or free_port(host)
        cport = free_port(host)
    check_port_free(host, port, "Kafka", "AIPULSE_KAFKA_PORT")
    check_port_free(host, cport, "the Kafka controller", "AIPULSE_KAFKA_PORT")
    props_path.write_text(_properties(data_dir, host, port, cport, partitions))
    ports_path.write_text(f"{port} {cport}")
    log4j = _log4j2(data_dir)
    classpath = f"{cache}/*"
    jvm = [java, KAFKA_HEAP, "-XX:+UseG1GC", "-Djava.awt.headless=true",
           f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]
    log_path = data_dir / "kafka.log"
    if not (data_dir / "logs" / "meta.properties").exists():
        cluster_id = uuid.uuid4().bytes
        import base64

        cid = base64.urlsafe_b64encode(cluster_id).decode().rstrip("=")
        res = subprocess.run(jvm + ["kafka.tools.StorageTool", "format", f"--cluster-id={cid}", "-c", str(props_path)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise StackError("formatting Kafka storage failed: " + (res.stderr or res.stdout).strip()[-300:])
    pid = spawn(jvm + ["kafka.Kafka", str(props_path)], log_path)
    wait_until(lambda: port_open(host, port) and _ready(f"{host}:{port}"), START_TIMEOUT_S, pid, "Kafka", log_path)
    return KafkaProcess(pid=pid, host=host, port=port, controller_port=cport, log=log_path)


def _ready(bootstrap: str) -> bool:
    """The broker answers metadata requests (a listening port alone is not enough)."""
    try:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            admin.list_topics()
        finally:
            admin.close()
        return True
    except Exception:
        return False


def ensure_topics(bootstrap: str, topics: dict[str, int], configs: dict[str, dict[str, str]] | None = None) -> None:
    """Create the topics that do not exist yet (name -> partitions; configs: name -> topic configs)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
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
