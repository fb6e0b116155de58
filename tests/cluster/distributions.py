"""Where the engines the cluster tests start come from, pinned and cached between runs.

- Spark: the PySpark distribution pinned in constraints.txt (its package folder is a SPARK_HOME,
  with `bin/spark-class` and `jars/`).
- Flink: the Flink distribution in PyPI's `apache-flink-libraries` (`pyflink/lib/flink-dist-*.jar`
  and friends, `pyflink/bin/bash-java-utils.jar`), pinned in constraints.txt.
- Beam's job servers: `org.apache.beam:beam-runners-{spark-3,flink-X.Y}-job-server` at the installed
  Beam version, fetched by Maven into its local repository (~/.m2, the cache between runs), or the
  jar a path in UNIMO_G_SPARK_JOB_SERVER_JAR / UNIMO_G_FLINK_JOB_SERVER_JAR names.
- Java: `java` on PATH (or JAVA_HOME/bin/java).

A missing tool is `Missing` (the tests fail under CI=true, where the install must provide it, and
skip elsewhere); an artifact Maven Central answers it does not have is `NotServed`, with Maven's
own words (the tests skip: nothing this project installs can provide it).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

BEAM_GROUP = "org.apache.beam"
FLINK_JOB_SERVER_MINOR = "1.20"  # the Flink line of apache-flink-libraries in constraints.txt; Beam publishes it
MAVEN_TIMEOUT_S = 900


class Missing(RuntimeError):
    """A tool or package the project's install provides is not there."""


class NotServed(RuntimeError):
    """Maven Central answered that it has no such artifact."""


def java() -> str:
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home, "bin", "java") if home else None
    path = str(candidate) if candidate and candidate.exists() else shutil.which("java")
    if not path:
        raise Missing("no `java` on PATH and no JAVA_HOME: install a Java 17 runtime")
    return path


def _package_dir(module: str, extra: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise Missing(f"the `{module}` package is not installed: pip install -c constraints.txt -e \".[{extra}]\"")
    return Path(list(spec.submodule_search_locations)[0])


def spark_home() -> Path:
    """PySpark's package folder, laid out as a Spark distribution."""
    home = _package_dir("pyspark", "cluster")
    if not (home / "bin" / "spark-class").exists():
        raise Missing(f"{home} has no bin/spark-class: the pyspark install is not a full distribution")
    return home


def spark_version() -> str:
    jars = sorted(spark_home().joinpath("jars").glob("spark-core_*-*.jar"))
    match = re.search(r"spark-core_[\d.]+-([\d.]+)\.jar", jars[0].name) if jars else None
    return match.group(1) if match else "unknown"


def flink_home() -> Path:
    """The `pyflink` folder of apache-flink-libraries: lib/ (flink-dist and its jars), bin/."""
    home = _package_dir("pyflink", "cluster")
    if not list(home.joinpath("lib").glob("flink-dist-*.jar")):
        raise Missing(f"{home}/lib has no flink-dist jar: install apache-flink-libraries")
    return home


def flink_version() -> str:
    jar = next(flink_home().joinpath("lib").glob("flink-dist-*.jar"))
    return jar.name[len("flink-dist-"):-len(".jar")]


def beam_version() -> str:
    import apache_beam

    return apache_beam.__version__


def job_server_jar(runner: str) -> Path:
    """Beam's job server jar for `runner` ("spark" or "flink") at the installed Beam version."""
    artifact = {"spark": "beam-runners-spark-3-job-server",
                "flink": f"beam-runners-flink-{FLINK_JOB_SERVER_MINOR}-job-server"}[runner]
    override = os.environ.get(f"UNIMO_G_{runner.upper()}_JOB_SERVER_JAR")
    if override:
        if not Path(override).is_file():
            raise Missing(f"UNIMO_G_{runner.upper()}_JOB_SERVER_JAR={override} is not a file")
        return Path(override)
    return maven_jar(BEAM_GROUP, artifact, beam_version())


def maven_jar(group: str, artifact: str, version: str) -> Path:
    """The jar in Maven's local repository, fetched from Maven Central first if it is not there."""
    repository = Path(os.environ.get("MAVEN_REPOSITORY", Path.home() / ".m2" / "repository"))
    jar = repository.joinpath(*group.split("."), artifact, version, f"{artifact}-{version}.jar")
    if jar.is_file():
        return jar
    mvn = shutil.which("mvn")
    if not mvn:
        raise Missing(f"no `mvn` on PATH to fetch {group}:{artifact}:{version}: install Maven")
    coordinate = f"{group}:{artifact}:{version}"
    # -U: ask Central again rather than repeat a "not found" Maven cached from an earlier try
    out = subprocess.run([mvn, "-B", "-q", "-U", "dependency:get", f"-Dartifact={coordinate}", "-Dtransitive=false"],
                         capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S)
    if jar.is_file():
        return jar
    said = " ".join(line for line in (out.stdout + out.stderr).splitlines() if "Could not" in line or "ERROR" in line)
    said = re.sub(r"\x1b\[[0-9;]*m", "", said)  # Maven colours its errors
    if any(answer in said for answer in ("Could not find artifact", "Could not find metadata", "was not found in")):
        raise NotServed(f"`mvn dependency:get -Dartifact={coordinate}`: Maven Central has no {coordinate} "
                        f"({said[:400]})")
    raise Missing(f"`mvn dependency:get -Dartifact={coordinate}` failed (exit {out.returncode}): {said[:800]}")


def dask_distributed() -> None:
    if importlib.util.find_spec("distributed") is None:
        raise Missing("dask.distributed is not installed: pip install -c constraints.txt -e \".[cluster]\"")
