"""The pipeline on the engines users run it on, checked without a cluster or a network:

- Dataflow (Runner v2): the graph translates with `--dry_run=True --no_auth` into a portable
  pipeline with every stage and the worker image given by `--sdk_container_image`;
- the Fn API path that the Flink and Spark runners use: `PortableRunner` with an embedded job
  service and LOOPBACK workers writes the same rows as the DirectRunner.
"""

from __future__ import annotations

import pytest

from tests.pipelines.test_end_to_end import run_job
from tests.run_outputs import SAMPLE, TINY, read_rows

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMAGE = "us-docker.pkg.dev/unimo-g-project/images/unimo-g-dataflow-gpu:0.1.0"
# The options of docs/runbooks/dataflow-gpu.md, with placeholder project and bucket names (Beam
# validates their syntax: a project id of 6+ characters, a bucket name of 3+).
DATAFLOW_ARGS = [
    "--runner=DataflowRunner", "--dry_run=True", "--no_auth", "--sdk_location=container",
    "--project=unimo-g-project", "--region=us-central1", "--temp_location=gs://unimo-g-bucket/tmp",
    f"--sdk_container_image={IMAGE}", "--machine_type=g2-standard-8",
    "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver",
]


def test_the_graph_translates_for_dataflow_runner_v2():
    pytest.importorskip("google.cloud.storage", reason="needs apache-beam[gcp] (the project's [dataflow] extra)")
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.portability.api import beam_runner_api_pb2
    from apache_beam.runners.runner import PipelineState

    from pipelines.prompts.graph import build_pipeline
    from unimo_g.config_tools import load_config
    from unimo_g.pipeline_config import PipelineConfig

    pipeline = beam.Pipeline(options=PipelineOptions(DATAFLOW_ARGS))
    build_pipeline(pipeline, str(SAMPLE), "gs://unimo-g-bucket/out", load_config(PipelineConfig, TINY))
    result = pipeline.run()
    assert result.state == PipelineState.DONE

    portable = result.job.proto_pipeline  # what Runner v2 receives
    names = {transform.unique_name for transform in portable.components.transforms.values()}
    for stage in ("Read/ReadUnits", "ReadForDedupe/ReadUnits", "Check", "Dedupe/KeepFirst", "Decode", "Phrases",
                  "Ground/RunInference", "Ground/SplitRejects", "Segment/RunInference", "Segment/SplitRejects",
                  "Assemble", "WriteShards/WriteFiles", "AllRejects", "WriteRejects/WriteFiles", "Manifest"):
        assert stage in names, f"{stage} missing from the translated graph"
    environments = list(portable.components.environments.values())
    assert [env.urn for env in environments] == ["beam:env:docker:v1"]
    assert beam_runner_api_pb2.DockerPayload.FromString(environments[0].payload).container_image == IMAGE


def test_portable_runner_with_loopback_workers_writes_the_direct_runners_rows(tmp_path):
    direct = run_job(tmp_path, "direct", "--runner=DirectRunner")
    portable = run_job(tmp_path, "portable", "--runner=PortableRunner", "--job_endpoint=embed",
                       "--environment_type=LOOPBACK")
    rows = read_rows(portable)
    assert len(rows) == 10 and rows == read_rows(direct)
