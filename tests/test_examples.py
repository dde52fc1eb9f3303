"""The example ML actions, deployed as zip actions on the runtime with the built model folders."""

from __future__ import annotations

import base64
import importlib.util
import io
import sys
import zipfile

import pytest

from runtime_harness import REPO
from test_runtime_concurrency import run_many

MODELS = REPO / "build" / "models"
CONCURRENT = {"__OW_ALLOW_CONCURRENT": "true"}

pytestmark = pytest.mark.skipif(
    not (MODELS / "bert-base" / "model.safetensors").exists(), reason="run `make models` first"
)


def example_zip(name: str) -> str:
    """The example's folder as `wsk action create --kind python:3 x example.zip` would send it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(REPO / "examples" / name / "__main__.py", "__main__.py")
    return base64.b64encode(buffer.getvalue()).decode()


def init_example(runtime, name: str, models_dir: str, main: str = "main") -> None:
    status, body = runtime.init(
        example_zip(name), main=main, binary=True, env={"WARMWHISK_MODELS_DIR": models_dir}
    )
    assert status == 200, body


def test_sentiment_on_the_real_minilm_model(start_runtime):
    runtime = start_runtime(env=CONCURRENT, volumes={str(MODELS): {"bind": "/models", "mode": "ro"}})
    init_example(runtime, "sentiment", "/models" if start_runtime.kind == "container" else str(MODELS))
    status, body = runtime.run({"texts": ["An absolute delight, I loved every minute.",
                                          "Terrible service and the food was cold."]})  # fmt: skip
    assert status == 200, body
    assert [r["label"] for r in body["results"]] == ["positive", "negative"]
    status, body = runtime.run({"text": 42})
    assert status == 200 and "must be a string" in body["error"]
    assert runtime.health()["model_loads"] == 3  # encoder, tokenizer and head, once each


def held_out_digits(count: int) -> tuple[list, list]:
    """`count` images of the split `make models` held out of training (the same seeded split)."""
    from sklearn.datasets import load_digits

    spec = importlib.util.spec_from_file_location("build_models", REPO / "examples" / "build_models.py")
    assert spec is not None and spec.loader is not None
    build_models = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build_models  # its dataclasses look their module up there
    spec.loader.exec_module(build_models)
    digits = load_digits()
    train, held_out = build_models.stratified_split(digits.target.tolist())
    assert not set(train) & set(held_out)
    chosen = held_out[:count]
    return [digits.data[i] for i in chosen], [digits.target[i] for i in chosen]


def test_digits_batched_on_held_out_images(start_process_runtime):
    runtime = start_process_runtime(env=CONCURRENT)
    init_example(runtime, "digits", str(MODELS))
    images, labels = held_out_digits(64)
    results = run_many(runtime, [{"value": {"pixels": image.tolist()}} for image in images])
    correct = sum(body["digit"] == label for (status, body), label in zip(results, labels, strict=True))
    assert all(status == 200 for status, _ in results)
    assert correct / len(labels) > 0.9
    assert "warmwhisk_batch_size_count" in runtime.metrics()


def test_bert_batched_and_unbatched_agree(start_process_runtime):
    answers = {}
    for main in ("main", "main_batched"):
        runtime = start_process_runtime(env=CONCURRENT)
        init_example(runtime, "bert", str(MODELS), main=main)
        results = run_many(runtime, [{"value": {"length": n}} for n in (8, 16, 32, 64)])
        assert all(status == 200 for status, _ in results), results
        answers[main] = [body for _, body in results]
        runtime.stop()
    for single, batched in zip(answers["main"], answers["main_batched"], strict=True):
        assert single["tokens"] == batched["tokens"]
        assert single["norm"] == pytest.approx(batched["norm"], rel=1e-4)


def test_sentiment_batched_agrees_with_unbatched_and_fails_bad_items_alone(start_process_runtime):
    texts = ["An absolute delight, I loved every minute.", "Terrible service and the food was cold.",
             "The staff were friendly and helpful.", "I want my money back."]  # fmt: skip
    unbatched = start_process_runtime(env=CONCURRENT)
    init_example(unbatched, "sentiment", str(MODELS))
    status, body = unbatched.run({"texts": texts})
    assert status == 200, body
    expected = body["results"]
    unbatched.stop()

    batched = start_process_runtime(env=CONCURRENT)
    init_example(batched, "sentiment", str(MODELS), main="main_batched")
    results = run_many(batched, [{"value": {"text": t}} for t in texts] + [{"value": {"texts": texts}}])
    assert all(status == 200 for status, _ in results), results
    for (_, answer), want in zip(results, expected, strict=False):
        assert answer["label"] == want["label"]
        for label, p in want["probabilities"].items():
            assert answer["probabilities"][label] == pytest.approx(p, abs=2e-4)
    assert 'one "text" per activation' in results[-1][1]["error"]
