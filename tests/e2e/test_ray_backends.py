"""Every registered backend on ``--engine ray`` gives the local engine's vectors (real models, local Ray).

One 2-CPU Ray serves the module (a start costs seconds); the backends come from the registry, so
a backend registered later is tested here without a change. The Ray engine sends each actor whole
chunks, the very texts one local ``embed_batch`` call gets, so even a backend whose vectors depend
on their batch-mates (onnx-int8's dynamic quantisation) must agree; where a backend is deterministic
whatever the thread count (static, the int8 kernels), the vectors are asserted bit for bit equal.

Needs the ``paperscope[ray]`` extra; set PAPERSCOPE_SKIP_RAY=1 to skip on a machine without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest
from rayprocs import TAG_VAR, ray_sandbox, wait_gone

from paperscope.corpus import bundled_corpus, expand, read_papers
from paperscope.embed import registry
from paperscope.embed.lock import load_lock
from paperscope.report import BuildReport

pytestmark = [pytest.mark.model, pytest.mark.ray]

if os.environ.get("PAPERSCOPE_SKIP_RAY") == "1":
    pytest.skip("PAPERSCOPE_SKIP_RAY=1", allow_module_level=True)

SAMPLE = 40  # papers, in chunks of CHUNK: three chunks, the last one short
CHUNK = 16


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A 2-CPU Ray for the whole module, in its own temp dir, checked to leave no process behind."""
    import ray

    with ray_sandbox() as (tag, temp):
        before = os.environ.get(TAG_VAR)
        os.environ[TAG_VAR] = tag  # inherited by every Ray process started below
        try:
            ray.init(num_cpus=2, _temp_dir=str(temp), include_dashboard=False, log_to_driver=False)
        finally:
            if before is None:
                os.environ.pop(TAG_VAR)
            else:
                os.environ[TAG_VAR] = before
        try:
            yield
        finally:
            ray.shutdown()
        assert wait_gone(tag, 20) == [], "Ray processes left behind after ray.shutdown()"


@pytest.fixture(scope="module")
def chunks() -> list[tuple[str, str]]:
    papers = list(read_papers(expand([bundled_corpus()])))[:SAMPLE]
    return [(p.title, p.abstract) for p in papers]


@pytest.mark.parametrize("backend", registry.BACKENDS)
def test_backend_on_ray_gives_the_local_vectors(backend: str, local_ray: None, chunks: list[tuple[str, str]]) -> None:
    from paperscope.embed import ray_engine

    lock = registry.with_backend(load_lock(), backend)
    texts = [lock.text(title, abstract) for title, abstract in chunks]
    batches = [texts[i : i + CHUNK] for i in range(0, len(texts), CHUNK)]
    model = registry.load_embedder(lock)  # the local engine's model (its CPU path)
    local = np.concatenate([model.embed_batch(batch) for batch in batches])

    report = BuildReport(store="-", generation=None)
    remote = np.concatenate(list(ray_engine.embed_chunks(lock, iter(batches), report, device="auto")))

    assert remote.shape == local.shape == (SAMPLE, lock.dimension)
    assert report.device == "cpu" and sum(report.nodes.values()) == SAMPLE
    cosines = (local * remote).sum(axis=1)
    assert cosines.min() >= 0.9999, f"{backend}: lowest cosine Ray vs local {cosines.min():.6f}"
    if getattr(model, "artifact_sha256", None) is not None:
        # A derived model: the actors load the driver's cached artefact (checked by sha256), and its
        # vectors do not depend on the thread count, so Ray and local agree to the bit.
        assert np.array_equal(local, remote), f"{backend}: max |diff| {np.abs(local - remote).max():.3g}"


def test_an_actor_whose_model_does_not_verify_fails_the_run_in_one_line(local_ray: None) -> None:
    """Each actor checks the model files against the lock the driver sends: a mismatch is one line."""
    from dataclasses import replace

    from paperscope.embed import ray_engine
    from paperscope.errors import PaperscopeError

    lock = registry.with_backend(load_lock(), "torch")
    wrong = replace(lock, files={**lock.files, "config.json": "0" * 64})
    report = BuildReport(store="-", generation=None)
    with pytest.raises(PaperscopeError) as failed:
        list(ray_engine.embed_chunks(wrong, iter([["one text"], ["another"]]), report, device="cpu"))
    message = str(failed.value)
    assert "\n" not in message and "config.json" in message and "does not match models.lock" in message
    assert report.nodes == {}  # nothing came back
