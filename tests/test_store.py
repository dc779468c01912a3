"""Results store and claims: unit tests with known answers (fast)."""
import json
from dataclasses import dataclass

import pytest

from decoupling.pipeline import claims, store
from decoupling.profiles import UnknownProfile, preset

CALLS = []


@dataclass(frozen=True)
class Cfg:
    x: int = 2
    seed: int = 0


def square(cfg: Cfg) -> dict:
    CALLS.append(cfg)
    return {"y": cfg.x ** 2}


def make_files(cfg: Cfg, out):
    CALLS.append(cfg)
    (out / "w.txt").write_text(str(cfg.x))
    return {"ok": True}


def test_run_caches_and_keys_on_config(tmp_path, monkeypatch):
    monkeypatch.setenv(store.ALLOW_CPU_FULL, "1")  # the full run below is tiny
    CALLS.clear()
    a = store.run(square, Cfg(3), profile="smoke", store=tmp_path)
    b = store.run(square, Cfg(3), profile="smoke", store=tmp_path)
    c = store.run(square, Cfg(4), profile="smoke", store=tmp_path)
    d = store.run(square, Cfg(3), profile="full", store=tmp_path)
    assert (a.value, b.value, c.value) == ({"y": 9}, {"y": 9}, {"y": 16})
    assert not a.cache_hit and b.cache_hit and not c.cache_hit and not d.cache_hit
    assert len(CALLS) == 3
    assert a.meta["seeds"] == [0] and a.meta["wall_time_s"] >= 0 and a.meta["commit"]


def test_corrupted_record_is_reported_and_recomputed(tmp_path, capfd):
    CALLS.clear()
    rec = store.run(square, Cfg(5), profile="smoke", store=tmp_path)
    path = rec.meta["path"]
    body = json.loads(open(path).read())
    body["value"]["y"] = 26  # tampered: checksum no longer matches
    open(path, "w").write(json.dumps(body))
    again = store.run(square, Cfg(5), profile="smoke", store=tmp_path)
    assert again.value == {"y": 25} and not again.cache_hit and len(CALLS) == 2
    assert "corrupted record" in capfd.readouterr().err
    open(path, "w").write("{not json")
    assert store.run(square, Cfg(5), profile="smoke", store=tmp_path).value == {"y": 25}


def test_full_without_gpu_or_record_is_refused_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv(store.ALLOW_CPU_FULL, raising=False)
    monkeypatch.setattr(store.paths, "RESULTS_DIR", tmp_path / "results")
    CALLS.clear()
    with pytest.raises(store.NeedsGPU, match="gpu_full.py.*--allow-cpu-full"):
        store.run(square, Cfg(6), profile="full", store=tmp_path / "store")
    assert CALLS == []  # refused before any work
    monkeypatch.setenv(store.ALLOW_CPU_FULL, "1")
    assert store.run(square, Cfg(6), profile="full", store=tmp_path / "store").value == {"y": 36}


def test_full_on_cpu_draws_committed_records_and_marks_changed_code_stale(tmp_path, monkeypatch):
    results = tmp_path / "results"
    monkeypatch.setattr(store.paths, "RESULTS_DIR", results)
    monkeypatch.setenv(store.ALLOW_CPU_FULL, "1")
    made = store.run(square, Cfg(8), profile="full", store=results)  # as if brought back from the GPU
    monkeypatch.delenv(store.ALLOW_CPU_FULL)
    CALLS.clear()
    same = store.run(square, Cfg(8), profile="full", store=tmp_path / "local")
    assert same.value == {"y": 64} and same.cache_hit and not same.stale and CALLS == []
    # A GPU record has another key here (torch version, device type): found by logical key, and current
    # because the library source and the data are the ones it was computed with.
    path = __import__("pathlib").Path(made.meta["path"])
    gpu = path.rename(path.with_name("00000000000000aa.json"))
    other = store.run(square, Cfg(8), profile="full", store=tmp_path / "local")
    assert other.value == {"y": 64} and other.cache_hit and not other.stale and CALLS == []
    # The library changed since it was computed: still shown (nothing recomputed), marked stale.
    body = json.loads(gpu.read_text())
    body["meta"]["source"] = "an older library"
    body["checksum"] = store._checksum(body)
    gpu.write_text(json.dumps(body))
    assert store.is_intact(body)
    stale = store.run(square, Cfg(8), profile="full", store=tmp_path / "local")
    assert stale.value == {"y": 64} and stale.stale and CALLS == []
    # A smoke record never falls back: other profiles are other experiments.
    assert not store.run(square, Cfg(8), profile="smoke", store=tmp_path / "local").cache_hit


def test_no_temp_files_left(tmp_path):
    store.run(square, Cfg(7), profile="smoke", store=tmp_path)
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_artifact_is_built_once_and_atomic(tmp_path):
    CALLS.clear()
    d1 = store.artifact(make_files, Cfg(3), profile="smoke", store=tmp_path)
    d2 = store.artifact(make_files, Cfg(3), profile="smoke", store=tmp_path)
    assert d1 == d2 and (d1 / "w.txt").read_text() == "3" and len(CALLS) == 1

    def boom(cfg, out):
        (out / "half").write_text("x")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        store.artifact(boom, Cfg(9), profile="smoke", store=tmp_path)
    assert not list((tmp_path / "artifacts").rglob("half"))


def slow_square(cfg: Cfg) -> dict:
    import time
    CALLS.append(cfg)
    time.sleep(0.5)  # long enough for the second caller to arrive while the first computes
    return {"y": cfg.x ** 2}


def slow_files(cfg: Cfg, out):
    import time
    CALLS.append(cfg)
    time.sleep(0.5)
    (out / "w.txt").write_text(str(cfg.x))
    return {"ok": True}


def test_callers_side_by_side_compute_a_key_once(tmp_path):
    """Two chapters executed at once (`rebuild --jobs`) asking for the same experiment or body: one
    computes, the other waits for the lock and reads the record (or the artifact) the first one wrote."""
    from concurrent.futures import ThreadPoolExecutor
    CALLS.clear()
    with ThreadPoolExecutor(2) as pool:
        recs = list(pool.map(lambda _: store.run(slow_square, Cfg(5), profile="smoke", store=tmp_path), range(2)))
    assert len(CALLS) == 1 and [r.value for r in recs] == [{"y": 25}] * 2
    assert sorted(r.cache_hit for r in recs) == [False, True]
    with ThreadPoolExecutor(2) as pool:
        dirs = list(pool.map(lambda _: store.artifact(slow_files, Cfg(6), profile="smoke", store=tmp_path), range(2)))
    assert len(CALLS) == 2 and dirs[0] == dirs[1] and (dirs[0] / "w.txt").read_text() == "6"


def test_unknown_profile_is_refused_with_valid_names(tmp_path):
    with pytest.raises(UnknownProfile, match="valid profiles: smoke, full"):
        store.run(square, Cfg(), profile="huge", store=tmp_path)
    with pytest.raises(UnknownProfile):
        preset({"smoke": Cfg()}, "laptop")
    assert preset({"smoke": Cfg(), "full": Cfg(x=9)}, "full", seed=4) == Cfg(x=9, seed=4)
    with pytest.raises(TypeError, match="no field.*label_seed"):  # an override the config lacks is refused
        preset({"smoke": Cfg()}, "smoke", label_seed=4)


def test_problems_flags_failing_checks_and_changed_verdicts():
    cs = [claims.Claim("ch", "a", "check", "smoke", ("smoke",), "s", 1, None, "fail").to_dict(),
          claims.Claim("ch", "b", "finding", "smoke", ("smoke",), "s", 1, None, "holds", p=0.01).to_dict(),
          claims.Claim("ch", "c", "finding", "smoke", ("full",), "s", 1, None, "holds").to_dict()]
    probs = claims.problems(cs, {"smoke": {"ch/b": "does not hold"}}, "smoke")
    assert len(probs) == 2 and "check failed: ch/a" in probs[0] and "ch/b" in probs[1]
    assert claims.problems(cs[1:], {"smoke": {"ch/b": "holds"}}, "smoke") == []


def test_measured_verdicts_and_checks_without_a_snapshot():
    """What a GPU run brought home is measured, not judged: its verdicts, and only its failing checks."""
    cs = [claims.Claim("ch", "a", "check", "full", ("full",), "s", 1, None, "fail").to_dict(),
          claims.Claim("ch", "b", "finding", "full", ("full",), "s", 1, None, "holds", p=0.01).to_dict(),
          claims.Claim("ch", "c", "finding", "full", ("smoke",), "s", 1, None, "holds").to_dict(),
          claims.Claim("ch", "d", "finding", "smoke", ("full",), "s", 1, None, "holds").to_dict()]
    assert claims.verdicts(cs, "full") == {"ch/b": "holds"}  # c is not enforced at full, d not measured there
    assert [p.split(":")[0] for p in claims.problems(cs, None, "full")] == ["check failed"]
    assert len(claims.problems(cs, {}, "full")) == 2  # an empty snapshot still judges: b has no expected verdict
