"""The engines the cluster tests and `bench.engines` start on this machine, as context managers that
start every process, wait for readiness with a bounded timeout, and stop every process on the way out."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.cluster import distributions
from tests.cluster.beam_services import READY_TIMEOUT_S, python_on_path
from tests.cluster.services import Service, free_port, http_json, running, wait_for


@dataclass(frozen=True)
class SparkCluster:
    master_url: str  # spark://127.0.0.1:PORT
    ui_url: str  # the master's web UI; /json/ is its state
    workers: int


@contextlib.contextmanager
def spark_standalone(folder: Path) -> Iterator[SparkCluster]:
    """A Spark standalone master and two workers (one core, 2 GB each) on loopback."""
    home = distributions.spark_home()
    distributions.java()
    env = dict(os.environ, SPARK_HOME=str(home), SPARK_LOCAL_IP="127.0.0.1", SPARK_CONF_DIR=str(folder / "conf"),
               SPARK_LOG_DIR=str(folder / "logs"), SPARK_WORKER_DIR=str(folder / "work"))
    (folder / "conf").mkdir(parents=True, exist_ok=True)
    port, ui_port = free_port(), free_port()
    master_url = f"spark://127.0.0.1:{port}"
    spark_class = str(home / "bin" / "spark-class")
    master = Service("spark master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                      "--port", str(port), "--webui-port", str(ui_port)],
                     folder / "master.log", env=env)
    worker_argv = [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
                   "--memory", "2g", "--work-dir", str(folder / "work")]
    workers = [Service(f"spark worker {i}", [*worker_argv, "--webui-port", str(free_port()), master_url],
                       folder / f"worker{i}.log", env=env) for i in range(2)]
    ui_url = f"http://127.0.0.1:{ui_port}"

    def both_workers_alive():
        state = http_json(f"{ui_url}/json/")
        alive = [w for w in (state or {}).get("workers", []) if w.get("state") == "ALIVE"]
        return state if state and state.get("status") == "ALIVE" and len(alive) == len(workers) else None

    with running(master, *workers) as services:
        wait_for(both_workers_alive, "Spark master with two ALIVE workers", list(services), READY_TIMEOUT_S)
        yield SparkCluster(master_url, ui_url, len(workers))


@dataclass(frozen=True)
class FlinkCluster:
    rest_url: str  # http://127.0.0.1:PORT; what --flink_master takes
    slots: int


# The --add-opens of Flink's own config.yaml (env.java.opts.all): Flink's serializers reach into these
# JDK packages on Java 17.
FLINK_JAVA_17_OPENS = [f"--add-opens=java.base/{package}=ALL-UNNAMED" for package in (
    "java.lang", "java.net", "java.io", "java.nio", "sun.nio.ch", "java.lang.reflect", "java.text", "java.time",
    "java.util", "java.util.concurrent", "java.util.concurrent.atomic", "java.util.concurrent.locks")]
FLINK_LOG4J = """rootLogger.level = INFO
rootLogger.appenderRef.console.ref = ConsoleAppender
appender.console.name = ConsoleAppender
appender.console.type = CONSOLE
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss,SSS} %-5p %-60c %x - %m%n
"""


def flink_resource_flags(java: str, home: Path, conf: Path, which: str) -> tuple[list[str], list[str]]:
    """(JVM flags, dynamic properties) Flink's start scripts compute for a JobManager ("JM") or
    TaskManager ("TM") from the config's process sizes (BashJavaUtils, as `bin/taskmanager.sh` does)."""
    classpath = os.pathsep.join([str(home / "bin" / "bash-java-utils.jar"), str(home / "lib" / "*")])
    out = subprocess.run([java, "-cp", classpath, "org.apache.flink.runtime.util.bash.BashJavaUtils",
                          f"GET_{which}_RESOURCE_PARAMS", "--configDir", str(conf)],
                         capture_output=True, text=True, timeout=120, check=True)
    marker = "BASH_JAVA_UTILS_EXEC_RESULT:"
    results = [line[len(marker):] for line in out.stdout.splitlines() if line.startswith(marker)]
    return results[0].split(), (results[1].split() if len(results) > 1 else [])


@contextlib.contextmanager
def flink_session(folder: Path) -> Iterator[FlinkCluster]:
    """A Flink session cluster on loopback: a JobManager and a TaskManager with two slots, started the
    way Flink's own scripts start them (`bin/jobmanager.sh`, `bin/taskmanager.sh`), without the scripts."""
    home = distributions.flink_home()
    java = distributions.java()
    conf = folder / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    rpc_port, rest_port, slots = free_port(), free_port(), 2
    conf.joinpath("config.yaml").write_text(
        f"jobmanager:\n  rpc: {{address: 127.0.0.1, port: {rpc_port}}}\n  bind-host: 127.0.0.1\n"
        f"  memory: {{process: {{size: 1024m}}}}\n"
        f"taskmanager:\n  bind-host: 127.0.0.1\n  host: 127.0.0.1\n  numberOfTaskSlots: {slots}\n"
        f"  memory: {{process: {{size: 1536m}}}}\n"
        f"rest: {{address: 127.0.0.1, bind-address: 127.0.0.1, port: {rest_port}}}\n"
        f"blob: {{server: {{port: '{free_port()}'}}}}\n")
    conf.joinpath("log4j.properties").write_text(FLINK_LOG4J)
    classpath = os.pathsep.join(str(jar) for jar in sorted(home.joinpath("lib").glob("*.jar")))
    logging = [f"-Dlog4j.configurationFile=file:{conf / 'log4j.properties'}"]
    jm_jvm, jm_dynamic = flink_resource_flags(java, home, conf, "JM")
    tm_jvm, tm_dynamic = flink_resource_flags(java, home, conf, "TM")
    jobmanager = Service("flink jobmanager", [java, *jm_jvm, *FLINK_JAVA_17_OPENS, *logging, "-cp", classpath,
                                              "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
                                              "--configDir", str(conf), *jm_dynamic], folder / "jobmanager.log")
    taskmanager = Service("flink taskmanager", [java, *tm_jvm, *FLINK_JAVA_17_OPENS, *logging, "-cp", classpath,
                                                "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
                                                "--configDir", str(conf), *tm_dynamic], folder / "taskmanager.log")
    rest_url = f"http://127.0.0.1:{rest_port}"

    def slots_registered():
        overview = http_json(f"{rest_url}/overview")
        return overview if overview and overview.get("slots-total", 0) >= slots else None

    with running(jobmanager, taskmanager) as services:
        wait_for(slots_registered, f"Flink cluster with {slots} task slots", list(services), READY_TIMEOUT_S)
        yield FlinkCluster(rest_url, slots)


@dataclass(frozen=True)
class DaskCluster:
    address: str  # tcp://127.0.0.1:PORT
    workers: int


@contextlib.contextmanager
def dask_distributed(folder: Path) -> Iterator[DaskCluster]:
    """A dask.distributed scheduler and two single-threaded worker processes on loopback."""
    distributions.dask_distributed()
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = python_on_path(folder / "bin")
    scheduler = Service("dask scheduler", [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                                           "127.0.0.1", "--port", str(port),
                                           "--dashboard-address", f"127.0.0.1:{free_port()}"],
                        folder / "scheduler.log", env=env)
    workers = [Service(f"dask worker {i}", [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host",
                                            "127.0.0.1", "--nthreads", "1", "--nworkers", "1", "--no-dashboard"],
                       folder / f"worker{i}.log", env=env) for i in range(2)]

    def workers_joined():
        from distributed import Client

        try:
            with Client(address, timeout=5) as client:
                return len(client.scheduler_info()["workers"]) == len(workers) or None
        except OSError:
            return None

    with running(scheduler, *workers) as services:
        wait_for(workers_joined, "dask scheduler with two workers", list(services), READY_TIMEOUT_S, poll_s=1.0)
        yield DaskCluster(address, len(workers))
