"""The Dockerfile, .dockerignore, docker/compose.yaml and constraints.txt, read
with real parsers: dockerfile-parse for the Dockerfile (line continuations, stages, ARG
substitution) and PyYAML for the compose file. These checks run with every `make test`; building
and running the image for real is `make docker-check` (docker/check.sh, buildah and podman, too
heavy for every run), whose last run docker/README.md records."""

import importlib
import importlib.util
import inspect
import json
import pathlib
import re
import shlex
import subprocess
import sys

import pytest
import yaml

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")

dockerfile_parse = pytest.importorskip("dockerfile_parse", reason="pip install dockerfile-parse (in the dev extra)")

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"
CONSTRAINTS = ROOT / "constraints.txt"
# The console script's target: dali_mixup.tools.cli after the tools moved, dali_mixup.cli before
# (it stays as a shim).
CLI_MODULES = ("dali_mixup.tools.cli", "dali_mixup.cli")


# -- helpers ---------------------------------------------------------------------------------


def instructions():
    """Dockerfile instructions (comments dropped), continuation lines joined by the parser."""
    parser = dockerfile_parse.DockerfileParser(path=str(DOCKERFILE))
    return [i for i in parser.structure if i["instruction"] != "COMMENT"]


def stages():
    """[(stage name, [instructions])], the global ARGs before the first FROM under None."""
    out = [(None, [])]
    for ins in instructions():
        if ins["instruction"] == "FROM":
            words = ins["value"].split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            out.append((name, [ins]))
        else:
            out[-1][1].append(ins)
    return out


def arg_defaults(instrs):
    args = {}
    for ins in instrs:
        if ins["instruction"] == "ARG" and "=" in ins["value"]:
            k, v = ins["value"].split("=", 1)
            args[k.strip()] = v.strip()
    return args


def global_args():
    return arg_defaults(stages()[0][1])


def stage(name):
    for n, instrs in stages():
        if n == name:
            return instrs
    raise AssertionError(f"no stage {name!r} in the Dockerfile")


def final_stage():
    return stages()[-1][1]


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def lines():
    """The image's CUDA lines: the extras of pyproject.toml an env-<line> stage is made for."""
    return [n[len("env-"):] for n, _ in stages()[1:] if n and n.startswith("env-")]


def from_source(instrs):
    return instrs[0]["value"].split()[0]


def stage_chain(line):
    """The stages the runtime of ``line`` is built from, base first (``FROM env-${CUDA_EXTRA}``
    resolved for that line)."""
    chain, name = [], None
    for n, instrs in reversed(stages()[1:]):
        if name is None or n == name:
            chain.insert(0, instrs)
            name = from_source(instrs).replace("${CUDA_EXTRA}", line)
    assert name == "${BASE_IMAGE}", f"the runtime of {line} does not start from the base image: {name}"
    return chain


def image_env(line):
    """ENV of the runtime image of ``line`` (the base image's own aside), through its stages."""
    env = {}
    for instrs in stage_chain(line):
        for ins in instrs:
            if ins["instruction"] == "ENV":
                for word in shlex.split(ins["value"].replace("\\\n", " ")):
                    key, _, value = word.partition("=")
                    env[key] = value
    return env


CUDA_LINE = ROOT / "docker" / "cuda-line.sh"


def cuda_line(command, env, stdin=None):
    """docker/cuda-line.sh ``command`` with ``env`` (and PATH), as the Dockerfile runs it."""
    full = {"PATH": f"{pathlib.Path(sys.executable).parent}:/usr/bin:/bin", **env}
    return subprocess.run(["sh", str(CUDA_LINE), command], env=full, input=stdin, capture_output=True, text=True)


def compose():
    return yaml.safe_load(COMPOSE.read_text())


def copy_sources(instrs):
    """Source paths of COPY/ADD instructions that read the build context (not --from=stage)."""
    out = []
    for ins in instrs:
        if ins["instruction"] not in ("COPY", "ADD"):
            continue
        value = ins["value"].strip()
        if value.startswith("["):
            words = json.loads(value)
        else:
            words = shlex.split(value)
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue
        out += paths[:-1]
    return out


def dockerignore_patterns():
    pats = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pats.append((neg, line[1:] if neg else line))
    return pats


def _pattern_regex(pattern):
    """Docker's .dockerignore syntax (Go filepath.Match plus `**`) as a regex on '/'-paths."""
    pattern = pattern.strip("/")
    i, out = 0, ""
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif c == "*":
            out += "[^/]*"
            i += 1
        elif c == "?":
            out += "[^/]"
            i += 1
        elif c == "[":
            j = pattern.index("]", i)
            out += "[" + pattern[i + 1 : j].replace("!", "^", 1) + "]"
            i = j + 1
        else:
            out += re.escape(c)
            i += 1
    return re.compile(out + r"\Z")


def ignored(path):
    """Whether Docker leaves ``path`` (relative, '/'-separated) out of the build context: the last
    pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    excluded = False
    for neg, pat in dockerignore_patterns():
        rx = _pattern_regex(pat)
        if any(rx.match(c) for c in candidates):
            excluded = not neg
    return excluded


def cli():
    """The ``dali-mixup`` command-line module, wherever it lives now."""
    for name in CLI_MODULES:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
    raise AssertionError(f"none of {CLI_MODULES} imports")


def parse(argv):
    """``argv`` parsed by the CLI's own parser (``build_parser()`` or ``build_parser([command])``)."""
    build_parser = cli().build_parser
    parser = build_parser([argv[0]]) if inspect.signature(build_parser).parameters else build_parser()
    return parser.parse_args(argv)


def constraints():
    """{name: version} of the ``name==version`` lines of constraints.txt (names normalised)."""
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not a name==version pin"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def requirement_name(req):
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]).lower()


def readme_extras():
    """Extras the README documents in `pip install ...dali-mixup[a,b]...` commands."""
    readme = ROOT / "README.md"
    if not readme.exists():
        pytest.skip("README.md not written yet (test_copy_sources_exist fails on it too)")
    found = set()
    for m in re.finditer(r"dali-mixup\[([A-Za-z0-9_,\s-]+)\]", readme.read_text()):
        found |= {e.strip() for e in m.group(1).split(",") if e.strip()}
    return found


# -- the Dockerfile --------------------------------------------------------------------------


def test_base_image_is_a_pinned_debian_arg():
    """All variants start from one pinned Debian image; CUDA comes from the wheels."""
    args = global_args()
    assert "BASE_IMAGE" in args, "the base image must be a global ARG (ARG BASE_IMAGE=... before the first FROM)"
    image = args["BASE_IMAGE"]
    assert re.fullmatch(r"debian:[a-z]+-\d{8}-slim", image), f"{image} is not a dated (pinned) Debian slim tag"
    assert stage("deps")[0]["value"].split()[0] == "${BASE_IMAGE}"
    assert args.get("CUDA_EXTRA") == "cuda13", "the default image is the CUDA 13 line (a global ARG: the runtime's FROM reads it)"
    names = set()
    for n, instrs in stages()[1:]:
        source = from_source(instrs)
        assert source in ("${BASE_IMAGE}", "env-${CUDA_EXTRA}") or source in names, f"stage {n} starts FROM {source}"
        names.add(n)
    # the nvidia/cuda base stays possible, documented as untested: its `base` flavour, never `runtime`
    for doc in (DOCKERFILE, ROOT / "docker" / "README.md"):
        text = doc.read_text()
        assert re.search(r"BASE_IMAGE=nvidia/cuda:13\.\d+\.\d+-base-ubuntu\d+\.\d+", text), f"{doc.name}: the nvidia/cuda base option"
        assert not re.search(r"nvidia/cuda:[\d.]+-runtime", text), f"{doc.name} names a `runtime` base"
        assert "untested" in text, f"{doc.name}: say the nvidia/cuda base is untested here"


def test_stages_deps_wheel_env_runtime():
    names = [n for n, _ in stages()[1:]]
    assert names == ["deps", "wheel", "env-cpu", "env-cuda13", "env-cuda12", "runtime"], names
    assert sorted(lines()) == ["cpu", "cuda12", "cuda13"]
    assert set(lines()) <= set(pyproject()["project"]["optional-dependencies"]), "an env-<line> stage without its extra"
    assert from_source(stage("wheel")) == "deps"
    # the runtime is the deps stage plus small layers: the dependencies are one shared layer,
    # not a copy that every rebuild checksums and that is stored twice; env-<line> adds metadata only
    assert from_source(final_stage()) == "env-${CUDA_EXTRA}"
    for line in lines():
        env_stage = stage(f"env-{line}")
        assert from_source(env_stage) == "deps"
        assert {i["instruction"] for i in env_stage[1:]} <= {"ENV"}, f"env-{line} adds a layer"
        assert stage_chain(line)[0] == stage("deps")
    runs = " ".join(i["value"] for i in stage("deps") + final_stage() if i["instruction"] == "RUN")
    for tool in ("build-essential", "gcc", "g++", "python3-dev", "python3-pip", "git ", "cmake"):
        assert tool not in runs, f"the image installs {tool.strip()}"
    copies = [i["value"] for i in final_stage() if i["instruction"] == "COPY"]
    assert copies == ["--from=wheel /dist /opt/dist"], copies


def test_apt_installs_are_lean():
    apt_runs = [i["value"] for i in instructions() if i["instruction"] == "RUN" and "apt-get" in i["value"] and "install" in i["value"]]
    assert apt_runs, "no apt-get install found"
    for run in apt_runs:
        assert "--no-install-recommends" in run, run
        assert "update" in run, f"update and install in one layer: {run}"
        assert "rm -rf /var/lib/apt/lists/*" in run, f"apt lists must be removed in the same layer: {run}"
        assert "DEBIAN_FRONTEND=noninteractive apt-get" in run, f"DEBIAN_FRONTEND set for the install alone: {run}"


def test_debian_frontend_is_not_left_in_the_image():
    for ins in instructions():
        if ins["instruction"] in ("ENV", "ARG"):
            assert "DEBIAN_FRONTEND" not in ins["value"], f"{ins['instruction']} {ins['value']}: set it in the RUN that needs it"


def test_dependencies_layer_comes_before_the_source():
    deps = stage("deps")
    kinds = [(i["instruction"], i["value"]) for i in deps]
    install_deps = next(k for k, (ins, v) in enumerate(kinds) if ins == "RUN" and "pip install -c /src/line-constraints.txt -r" in v)
    # only the line's scripts, pyproject.toml and constraints.txt are in the image when the
    # dependencies are installed, and the deps stage (which the runtime starts from) never sees the source
    copies = [v for ins, v in kinds if ins == "COPY"]
    assert copies == ["docker/cuda-line.sh docker/slim_venv.py /src/docker/", "pyproject.toml /src/pyproject.toml",
                      "constraints.txt /src/constraints.txt"], copies
    assert max(k for k, (ins, _) in enumerate(kinds) if ins == "COPY") < install_deps
    wheel = [(i["instruction"], i["value"]) for i in stage("wheel")]
    copy_source = next(k for k, (ins, v) in enumerate(wheel) if ins == "COPY" and v.split()[0] == "dali_mixup")
    build = next(k for k, (ins, v) in enumerate(wheel) if ins == "RUN" and "pip wheel --no-deps" in v)
    assert copy_source < build
    assert all("pip install" not in v for ins, v in wheel[copy_source:] if ins == "RUN"), "nothing is installed after the source"
    runtime = [(i["instruction"], i["value"]) for i in final_stage()]
    whl = runtime.index(("COPY", "--from=wheel /dist /opt/dist"))
    install = next(k for k, (ins, v) in enumerate(runtime) if ins == "RUN" and "pip install --no-deps --no-index /opt/dist/" in v)
    assert whl < install, "a source edit rebuilds only the wheel and its small layer"


def test_every_pip_install_uses_the_constraints():
    files = {"Dockerfile": DOCKERFILE, "docker/test.Dockerfile": ROOT / "docker" / "test.Dockerfile"}
    for label, path in files.items():
        parser = dockerfile_parse.DockerfileParser(path=str(path))
        for ins in parser.structure:
            if ins["instruction"] != "RUN":
                continue
            for cmd in re.split(r"&&|;", ins["value"]):
                if re.search(r"\bpip install\b", cmd) and "--no-index" not in cmd:
                    assert re.search(r"-c \S*constraints\.txt", cmd), f"{label}: {cmd.strip()}"
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line]
    assert installs and all("-c $(CONSTRAINTS)" in line for line in installs), installs
    assert re.search(r"^CONSTRAINTS \?= constraints\.txt$", makefile, re.M)
    assert re.search(r"^\$\(VENV\)/\.installed: .*\$\(CONSTRAINTS\)", makefile, re.M), "the venv is rebuilt when the pins change"


def test_constraints_pin_what_the_extras_need():
    pins = constraints()
    project = pyproject()["project"]
    reqs = list(project["dependencies"])
    for extra in ("cpu", "bench", "dev", "cuda13"):
        reqs += project["optional-dependencies"][extra]
    unpinned = sorted({requirement_name(r) for r in reqs} - set(pins))
    assert not unpinned, f"constraints.txt pins no version of {unpinned}: run `make constraints`"
    assert "dali-mixup" not in pins, "constraints.txt must not pin the package itself"


def test_the_tests_run_the_pinned_versions():
    """`make test` installs with the constraints: the versions running now are the image's."""
    if pathlib.Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("not the `make test` environment (.venv)")
    from importlib.metadata import PackageNotFoundError, version

    pins = constraints()
    for name in ("torch", "torchvision", "nvidia-dali-cuda130", "numpy", "pillow", "timm", "matplotlib"):
        try:
            assert version(name) == pins[name], f"{name} {version(name)} here, {pins[name]} in constraints.txt"
        except PackageNotFoundError:
            pytest.fail(f"{name} is pinned but not installed")


def test_runs_as_non_root_user():
    runtime = final_stage()
    users = [i["value"].strip() for i in runtime if i["instruction"] == "USER"]
    assert users, "the final stage sets no USER (it would run as root)"
    assert users[-1] not in ("root", "0") and not users[-1].startswith(("0:", "root:")), users[-1]
    useradd = " ".join(i["value"] for i in runtime if i["instruction"] == "RUN" and "useradd" in i["value"])
    assert re.search(rf"useradd\b.*\b{re.escape(users[-1])}\b", useradd), "the USER is created in the final stage"
    uid = arg_defaults(runtime).get("USER_UID")
    assert uid is not None and int(uid) != 0


def test_home_and_caches_are_set_and_writable_by_any_uid():
    """`--user "$(id -u):$(id -g)"` gives a uid the image does not know: HOME, CuPy's kernel cache and
    Matplotlib's config must still point at folders it can write (1777, made in the image)."""
    parser = dockerfile_parse.DockerfileParser(path=str(DOCKERFILE))
    env = parser.envs  # the final stage's
    dirs = {k: env.get(k) for k in ("HOME", "XDG_CACHE_HOME", "CUPY_CACHE_DIR", "MPLCONFIGDIR")}
    assert all(dirs.values()), dirs
    chmod = " ".join(i["value"] for i in final_stage() if i["instruction"] == "RUN" and "chmod 1777" in i["value"])
    made = re.search(r"chmod 1777 ([^&;]+)", chmod)
    assert made, "no chmod 1777 in the final stage"
    for key, path in dirs.items():
        assert path in made.group(1).split(), f"{key}={path} is not made writable for any uid (chmod 1777)"


def test_entrypoint_and_default_command():
    runtime = final_stage()
    entry = [json.loads(i["value"]) for i in runtime if i["instruction"] == "ENTRYPOINT"]
    cmd = [json.loads(i["value"]) for i in runtime if i["instruction"] == "CMD"]
    assert entry[-1] == ["dali-mixup"]
    assert cmd[-1][0] == "bench"
    scripts = pyproject()["project"]["scripts"]
    assert scripts.get("dali-mixup") in {f"{m}:main" for m in CLI_MODULES}, "the console script the entry point runs"


def test_nvidia_container_toolkit_settings_per_line():
    """The Debian base sets nothing for the NVIDIA Container Toolkit: each CUDA line's image does
    (the GPUs, the capabilities with `video` for the hardware JPEG decoder, the driver the line
    needs); the CPU image sets none of it."""
    for line in lines():
        env = image_env(line)
        nvidia = {k: v for k, v in env.items() if k.startswith("NVIDIA_")}
        if line == "cpu":
            assert not nvidia, f"the CPU image sets {nvidia}"
            continue
        major = line[len("cuda"):]
        assert nvidia.get("NVIDIA_VISIBLE_DEVICES") == "all", (line, nvidia)
        caps = nvidia.get("NVIDIA_DRIVER_CAPABILITIES", "")
        assert set(caps.split(",")) >= {"compute", "utility", "video"}, (line, caps)
        assert compose()["x-image"]["environment"]["NVIDIA_DRIVER_CAPABILITIES"] == caps
        require = nvidia.get("NVIDIA_REQUIRE_CUDA", "")
        assert re.fullmatch(rf"cuda>={major}\.\d+", require), f"{line}: NVIDIA_REQUIRE_CUDA={require!r}"


def test_ca_bundle_secret_reaches_apt_and_pip_in_every_networked_step():
    """A build behind a TLS-intercepting proxy takes the host's CA bundle as the secret `ca-bundle`
    (documented in the Dockerfile's header and docker/README.md); no layer keeps it."""
    for path in (DOCKERFILE, ROOT / "docker" / "test.Dockerfile"):
        parser = dockerfile_parse.DockerfileParser(path=str(path))
        for ins in parser.structure:
            v = ins["value"]
            if ins["instruction"] != "RUN" or not re.search(r"apt-get\b.*\bupdate|pip install(?! --no-deps --no-index)", v):
                continue
            assert v.startswith("--mount=type=secret,id=ca-bundle,required=false "), f"{path.name}: {v[:80]}"
            assert "PIP_CERT=/run/secrets/ca-bundle" in v or "Acquire::https::CAInfo=/run/secrets/ca-bundle" in v, v[:200]
        assert not [i for i in parser.structure if i["instruction"] in ("COPY", "ADD", "ENV") and "ca-bundle" in i["value"]]
    for doc in (DOCKERFILE, ROOT / "docker" / "README.md"):
        assert "--secret id=ca-bundle,src=" in doc.read_text(), f"{doc.name} does not document the CA bundle secret"


def test_cuda_line_is_checked_before_any_download_and_after_the_install():
    deps = stage("deps")
    runs = [i["value"] for i in deps if i["instruction"] == "RUN"]
    assert runs[0] == "sh /src/docker/cuda-line.sh args", "the build arguments are checked first, before apt and pip"
    declared = [i["value"].split("=")[0] for i in deps[: [i["value"] for i in deps].index(runs[0])] if i["instruction"] == "ARG"]
    assert {"CUDA_EXTRA", "TORCH_INDEX_URL"} <= set(declared), f"the check sees only the ARGs declared before it: {declared}"
    install = next(v for v in runs if "pip install -c /src/line-constraints.txt -r" in v)
    steps = [c.strip() for c in install.split("&&")]
    assert steps.index("sh /src/docker/cuda-line.sh torch") > steps.index("pip check"), "torch's CUDA is checked once installed"
    assert steps[-1] == "python3 /src/docker/slim_venv.py /opt/venv", "the venv is slimmed in the layer that installs it"
    requirements = next(v for v in runs if "tomllib" in v)
    assert "sh /src/docker/cuda-line.sh constraints < /src/constraints.txt > /src/line-constraints.txt" in requirements
    runtime_runs = " ".join(i["value"] for i in final_stage() if i["instruction"] == "RUN")
    assert re.search(r'if \[ "\$\{CUDA_EXTRA\}" != cpu \]; then python3 -c "import cupy', runtime_runs)
    assert not any(r.startswith("cupy") for r in pyproject()["project"]["optional-dependencies"]["cpu"])


CU130, CU128, CPU_INDEX = (f"https://download.pytorch.org/whl/{t}" for t in ("cu130", "cu128/", "cpu"))


@pytest.mark.parametrize("extra, cuda_version, index, error", [
    ("cuda13", None, CU130, None),
    ("cuda13", None, "https://pypi.org/simple", None),  # torch's line is checked after the install
    ("cuda12", None, CU128, None),
    ("cpu", None, CPU_INDEX, None),
    ("cpu", None, "https://pypi.org/simple", None),
    ("cpu", "13.0.1", CU130, None),
    ("cuda13", "13.0.1", CU130, None),  # an nvidia/cuda base of the same line
    ("cuda12", "12.8.1", CU128, None),
    ("cuda12", None, CU130, "CUDA_EXTRA=cuda12 does not match TORCH_INDEX_URL"),
    ("cuda13", None, CU128, "CUDA_EXTRA=cuda13 does not match TORCH_INDEX_URL"),
    ("cuda13", None, CPU_INDEX, "CUDA_EXTRA=cuda13 does not match TORCH_INDEX_URL"),
    ("cuda13", "12.8.1", CU130, "CUDA_EXTRA=cuda13 does not match the base image (CUDA_VERSION=12.8.1)"),
    ("cuda12", "13.0.1", "https://pypi.org/simple", "CUDA_EXTRA=cuda12 does not match the base image"),
    ("cuda14", None, CU130, "CUDA_EXTRA=cuda14 is not a line of this image"),
    ("cuda", None, CU130, "CUDA_EXTRA=cuda is not a line of this image"),
    ("", None, CU130, "CUDA_EXTRA=(unset) is not a line of this image"),
])
def test_cuda_line_args(extra, cuda_version, index, error):
    env = {"CUDA_EXTRA": extra, "TORCH_INDEX_URL": index}
    if cuda_version:
        env["CUDA_VERSION"] = cuda_version
    proc = cuda_line("args", env)
    if error is None:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"CUDA line: {extra}"), proc.stdout
    else:
        assert proc.returncode == 1 and proc.stderr.startswith(error), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, "one line"


@pytest.mark.parametrize("extra, built, ok", [
    ("cuda13", "13.0", True), ("cuda12", "12.8", True), ("cpu", None, True), ("cpu", "13.0", True),
    ("cuda12", "13.0", False), ("cuda13", "12.8", False), ("cuda13", None, False),
])
def test_cuda_line_torch(tmp_path, extra, built, ok):
    """After the install, torch (here a stand-in module) must be built for the line's CUDA major."""
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        f"__version__ = '2.14.1+{'cu' + built.replace('.', '') if built else 'cpu'}'\n"
        f"class version:\n    cuda = {built!r}\n")
    proc = cuda_line("torch", {"CUDA_EXTRA": extra, "PYTHONPATH": str(tmp_path)})
    assert (proc.returncode == 0) == ok, proc.stderr
    if not ok:
        assert proc.stderr.startswith(f"CUDA_EXTRA={extra} does not match torch 2.14.1"), proc.stderr
        assert "download.pytorch.org/whl/cu1" in proc.stderr


def test_cuda_line_constraints():
    """cuda13 and cpu install the tests' pins; cuda12 the same DALI and CuPy versions for CUDA 12,
    and no pin of a CUDA 13 component."""
    text = CONSTRAINTS.read_text()
    for extra in ("cuda13", "cpu"):
        assert cuda_line("constraints", {"CUDA_EXTRA": extra}, stdin=text).stdout == text
    proc = cuda_line("constraints", {"CUDA_EXTRA": "cuda12"}, stdin=text)
    assert proc.returncode == 0, proc.stderr
    pins, out = constraints(), {}
    for line in proc.stdout.splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            out[re.sub(r"[-_.]+", "-", name).lower()] = version
    assert out["nvidia-dali-cuda120"] == pins["nvidia-dali-cuda130"]
    assert out["cupy-cuda12x"] == pins["cupy-cuda13x"]
    dropped = {n for n in pins if n.startswith("nvidia-") or n in ("cuda-toolkit", "cuda-bindings", "cupy-cuda13x")}
    assert not dropped & set(out), sorted(dropped & set(out))
    assert {n: v for n, v in pins.items() if n not in dropped} == {n: v for n, v in out.items() if n not in ("nvidia-dali-cuda120", "cupy-cuda12x")}
    assert proc.stdout.startswith("#"), "the header comment stays"


def test_copy_sources_exist():
    sources = copy_sources(instructions())
    assert {"pyproject.toml", "constraints.txt", "README.md", "dali_mixup"} <= set(sources), sources
    for src in sources:
        assert (ROOT / src).exists(), f"the Dockerfile copies {src}, which is not in the repository"


def test_copy_sources_are_in_the_build_context():
    for src in copy_sources(instructions()):
        path = ROOT / src
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        assert files, src
        for f in files:
            rel = f.relative_to(ROOT).as_posix()
            assert not ignored(rel), f".dockerignore leaves {rel} out, but the Dockerfile copies it"


@pytest.mark.parametrize("path", [
    ".venv/bin/python", ".git/HEAD", ".pytest_cache/v/cache/nodeids", ".benchmarks/x.json",
    "dali_mixup/__pycache__/mix.cpython-311.pyc", "results/bench.json", "bench-out/run.json",
    "benchmarks/results/cpu.json", ".gpu-stage/part.00", "tests/test_mix.py", "data/train/a/0.jpg",
    "docker/check.sh", "docker/README.md", "docker/test.Dockerfile", "dist/dali_mixup-0.1.0-py3-none-any.whl",
])
def test_dockerignore_keeps_out(path):
    assert ignored(path), f"{path} would be sent to the Docker daemon"


def test_dockerignore_matcher_follows_docker_rules():
    # the matcher these tests rely on: last match wins, parents count, ** spans folders
    assert _pattern_regex("**/__pycache__").match("a/b/__pycache__")
    assert _pattern_regex("**/__pycache__").match("__pycache__")
    assert not _pattern_regex("*").match("a/b")
    assert _pattern_regex("*.py[cod]").match("x.pyc") and not _pattern_regex("*.py[cod]").match("x.py")


# -- extras: the Dockerfile, pyproject.toml and the README agree ------------------------------


def test_image_extras_exist_in_pyproject_and_match_the_cuda_line():
    builder = arg_defaults(stage("deps"))
    extras = pyproject()["project"]["optional-dependencies"]
    cuda_extra, more = global_args()["CUDA_EXTRA"], [e for e in builder["EXTRAS"].split(",") if e]
    for e in [cuda_extra, *more]:
        assert e in extras, f"the Dockerfile installs extra {e!r}, which pyproject.toml does not define"
    major = cuda_extra[len("cuda"):]
    assert major.isdigit(), cuda_extra
    assert any(r.startswith(f"nvidia-dali-cuda{major}") for r in extras[cuda_extra])
    assert any(r.startswith(f"cupy-cuda{major}") for r in extras[cuda_extra])
    assert builder["TORCH_INDEX_URL"].rstrip("/").endswith(f"/cu{major}0")


def test_requirements_step_installs_exactly_the_extras(tmp_path):
    """Run the deps stage's requirements command (the shell line, ARG defaults as the environment)
    against the real pyproject.toml and compare with what `pip install .[extras]` would want."""
    run = next(i["value"] for i in stage("deps") if i["instruction"] == "RUN" and "tomllib" in i["value"])
    command = run.split(" > /src/requirements.txt")[0]
    assert command.startswith("python3 -c "), command
    command = command.replace("/src/pyproject.toml", str(ROOT / "pyproject.toml")).replace("python3", shlex.quote(sys.executable), 1)
    builder = {**arg_defaults(stage("deps")), "CUDA_EXTRA": global_args()["CUDA_EXTRA"]}
    env = {"CUDA_EXTRA": builder["CUDA_EXTRA"], "EXTRAS": builder["EXTRAS"], "PATH": "/usr/bin:/bin"}
    out = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    project = pyproject()["project"]
    want = list(project["dependencies"])
    for e in [builder["CUDA_EXTRA"], *builder["EXTRAS"].split(",")]:
        want += project["optional-dependencies"][e]
    assert [line for line in out if line] == want


def test_readme_documents_the_extras_the_image_installs():
    documented = readme_extras()
    extras = set(pyproject()["project"]["optional-dependencies"])
    assert documented, "the README documents no `pip install \"dali-mixup[...]\"` command"
    assert documented <= extras, f"the README documents extras pyproject.toml lacks: {sorted(documented - extras)}"
    builder = arg_defaults(stage("deps"))
    image = {global_args()["CUDA_EXTRA"], *[e for e in builder["EXTRAS"].split(",") if e]}
    assert image <= documented, f"the image installs extras the README does not document: {sorted(image - documented)}"
    assert {"cuda12", "cuda13"} <= documented, "both CUDA lines (the image's build argument) are documented"


def test_cuda12_variant_in_docker_readme_is_consistent():
    text = (ROOT / "docker" / "README.md").read_text()
    assert "CUDA_EXTRA=cuda12" in text and "whl/cu128" in text
    m = re.search(r"BASE_IMAGE=(nvidia/cuda:(\d+)\.\d+\.\d+-base-ubuntu[\d.]+)[^\n]*\n[^\n]*CUDA_EXTRA=cuda(\d+)", text)
    assert m and m.group(2) == m.group(3), "docker/README.md pairs an nvidia/cuda base with the extra of its line"
    assert "cuda12" in pyproject()["project"]["optional-dependencies"]
    assert re.search(r"docker run\b[^\n]*--gpus all", text), "docker/README.md shows `docker run --gpus all`"


def test_docker_check_builds_both_variants_and_checks_the_cuda_image():
    """`make docker-check` (too heavy for CI) covers what docker/README.md says it does."""
    check = (ROOT / "docker" / "check.sh").read_text()
    assert 'CUDA_ARGS=(--build-arg BASE_IMAGE="$BASE" --build-arg CUDA_EXTRA=cuda13' in check
    assert "--build-arg CUDA_EXTRA=cpu" in check, "CUDA_EXTRA given explicitly (buildah 1.28 and the env-<line> stage)"
    for needle in ("docker/nvrtc_check.py", "docker/cuda_libs.py --loaded", "doctor --device gpu",
                   "cuda-line.sh torch", "NVIDIA_REQUIRE_CUDA=cuda>=13.0"):
        assert needle in check, needle
    for script in ("nvrtc_check.py", "cuda_libs.py"):
        assert (ROOT / "docker" / script).is_file()


# -- compose ---------------------------------------------------------------------------------


def _gpu_devices(service):
    return service["deploy"]["resources"]["reservations"]["devices"]


def test_compose_services_reserve_gpus():
    services = compose()["services"]
    assert {"bench", "train"} <= set(services)
    for name in ("bench", "train"):
        devices = _gpu_devices(services[name])
        assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices), name
    assert _gpu_devices(services["bench"])[0]["count"] == 1
    assert _gpu_devices(services["train"])[0]["count"] == "all"


def test_compose_mounts_data_read_only_and_results():
    services = compose()["services"]
    for name in ("bench", "train"):
        vols = services[name]["volumes"]
        data = [v for v in vols if v.split(":")[-2:] == ["/data", "ro"] or v.endswith(":/data:ro")]
        assert data, f"{name}: the dataset is not mounted read-only at /data: {vols}"
        assert any(v.split(":")[-1] == "/results" for v in vols), f"{name}: no results folder mounted"
        assert services[name]["working_dir"] == "/results"


def test_compose_shared_memory_is_sized():
    services = compose()["services"]
    for name, least_gb in (("bench", 1), ("train", 8)):
        size = services[name]["shm_size"]
        m = re.fullmatch(r"(\d+)gb", str(size).lower())
        assert m and int(m.group(1)) >= least_gb, f"{name}: shm_size {size!r}"


def test_compose_train_is_torchrun_of_the_train_command():
    train = compose()["services"]["train"]
    assert train["entrypoint"] == ["torchrun"]
    cmd = train["command"]
    assert any(a.startswith("--nproc_per_node") for a in cmd)
    assert cmd[cmd.index("-m") + 1 : cmd.index("-m") + 3] == ["dali_mixup", "train"]
    # the arguments after `train` parse with the train command's own parser
    argv = cmd[cmd.index("train") :]
    args = parse(argv)
    assert str(args.data) == "/data" and str(args.out).startswith("/results")


def test_compose_bench_command_parses():
    bench = compose()["services"]["bench"]
    commands = cli().COMMANDS
    assert bench["command"][0] == "bench" and "bench" in commands
    module = commands["bench"][0]
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        pytest.skip(f"{module} not written yet")
    args = parse(bench["command"])
    assert str(args.data).startswith("/data")


def test_compose_builds_this_dockerfile_with_matching_args():
    x = compose()["x-image"]
    assert (COMPOSE.parent / x["build"]["context"] / x["build"]["dockerfile"]).resolve() == DOCKERFILE
    build_args = x["build"]["args"]
    for key in ("BASE_IMAGE", "CUDA_EXTRA", "TORCH_INDEX_URL"):
        default = re.fullmatch(r"\$\{" + key + r":-(.+)\}", build_args[key])
        assert default, f"{key}: {build_args[key]}"
        dockerfile_default = global_args().get(key) or arg_defaults(stage("deps")).get(key)
        assert default.group(1) == dockerfile_default, f"compose's default {key} differs from the Dockerfile's"


# -- the image's virtual environment: what slim_venv.py removes, what cuda_libs.py reports -----


def _docker_module(name):
    spec = importlib.util.spec_from_file_location(f"docker_{name}", ROOT / "docker" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lib_tree(root):
    """A site-packages in miniature: triton's CUPTI as three identical files plus its static archive,
    NVRTC and its alt build, CUDA's archives, and the same bytes in another folder."""
    blob = bytes(range(256)) * 512  # 128 KiB, above slim_venv.MIN_COPY_BYTES
    files = {
        "triton/backends/nvidia/lib/cupti/libcupti.so": blob,
        "triton/backends/nvidia/lib/cupti/libcupti.so.12": blob,
        "triton/backends/nvidia/lib/cupti/libcupti.so.2025.1.1": blob,
        "triton/backends/nvidia/lib/cupti/libnvperf_host.so": blob[::-1],
        "triton/backends/nvidia/lib/cupti/libcupti_static.a": b"!<arch>\n" + blob,
        "nvidia/cu13/lib/libcupti.so.13": blob,  # same bytes, another folder: kept
        "nvidia/cu13/lib/libnvrtc.so.13": blob[1:],
        "nvidia/cu13/lib/libnvrtc.alt.so.13": blob[2:],
        "nvidia/cu13/lib/libnvrtc-builtins.alt.so.13.0": b"x" * 1000,
        "nvidia/cu13/lib/libcudart_static.a": b"!<arch>\n",
        "nvidia/cu13/lib/libcudadevrt.a": b"!<arch>\n",
        "nvidia/cu13/lib/libtiny.so.1": b"tiny",
        "nvidia/cu13/lib/libtiny.so": b"tiny",  # identical but small: left alone
        "torchvision.libs/libnvjpeg.36e11081.so.13": blob[3:],
        "nvidia/cu13/lib/libnvjpeg.so.13": blob[4:],
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return blob


def test_slim_venv_removes_what_nothing_loads_and_links_identical_copies(tmp_path):
    blob = _lib_tree(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "docker" / "slim_venv.py"), str(tmp_path)],
                          capture_output=True, text=True, check=True)
    cupti = tmp_path / "triton/backends/nvidia/lib/cupti"
    lib = tmp_path / "nvidia/cu13/lib"
    gone = [cupti / "libcupti_static.a", lib / "libcudart_static.a", lib / "libnvrtc.alt.so.13",
            lib / "libnvrtc-builtins.alt.so.13.0"]
    assert not any(p.exists() or p.is_symlink() for p in gone), proc.stdout
    for name in ("libcupti.so", "libcupti.so.12"):
        assert (cupti / name).is_symlink() and (cupti / name).readlink() == pathlib.Path("libcupti.so.2025.1.1")
        assert (cupti / name).read_bytes() == blob
    assert not (cupti / "libcupti.so.2025.1.1").is_symlink()
    kept = [cupti / "libnvperf_host.so", lib / "libcupti.so.13", lib / "libnvrtc.so.13", lib / "libcudadevrt.a",
            lib / "libtiny.so", lib / "libtiny.so.1", tmp_path / "torchvision.libs/libnvjpeg.36e11081.so.13"]
    assert all(p.is_file() and not p.is_symlink() for p in kept)
    assert proc.stdout.splitlines()[-1].startswith("slim_venv: 4 unused files"), proc.stdout
    assert "2 identical copies linked" in proc.stdout
    again = subprocess.run([sys.executable, str(ROOT / "docker" / "slim_venv.py"), str(tmp_path)],
                           capture_output=True, text=True, check=True)
    assert again.stdout.strip() == "slim_venv: 0 unused files, 0.0 MB; 0 identical copies linked, 0.0 MB"


@pytest.mark.parametrize("filename, expected", [
    ("libnvrtc.so.13", ("libnvrtc", "")),
    ("libnvrtc.alt.so.13", ("libnvrtc", "alt")),
    ("libnvrtc-builtins.alt.so.13.0", ("libnvrtc-builtins", "alt")),
    ("libnvjpeg.36e11081.so.13", ("libnvjpeg", "")),
    ("libcvcuda-90d2d242.so.0", ("libcvcuda", "")),
    ("libcupti.so.2025.1.1", ("libcupti", "")),
    ("libcudnn_ops.so.9", ("libcudnn_ops", "")),
    ("libcupti_static.a", ("libcupti_static.a", "static")),
])
def test_cuda_libs_names_a_library_across_packages(filename, expected):
    assert _docker_module("cuda_libs").library_name(filename) == expected


def test_cuda_libs_lists_sizes_and_libraries_present_twice(tmp_path):
    _lib_tree(tmp_path)
    cupti = tmp_path / "triton/backends/nvidia/lib/cupti"
    (cupti / "libcupti.so").unlink()
    (cupti / "libcupti.so").symlink_to("libcupti.so.2025.1.1")  # a link counts once
    (tmp_path / "nvidia/cu13/lib/libtiny.so").unlink()
    out = tmp_path / "libs.json"
    proc = subprocess.run([sys.executable, str(ROOT / "docker" / "cuda_libs.py"), "--json", str(out), str(tmp_path)],
                          capture_output=True, text=True, check=True)
    report = json.loads(out.read_text())
    paths = {pathlib.Path(f["path"]).relative_to(tmp_path).as_posix() for f in report["files"]}
    assert "triton/backends/nvidia/lib/cupti/libcupti.so" not in paths and "nvidia/cu13/lib/libtiny.so.1" not in paths
    dups = {d["library"]: d for d in report["duplicates"]}
    assert set(dups) == {"libcupti", "libnvrtc", "libnvjpeg"}, sorted(dups)
    assert len(dups["libcupti"]["copies"]) == 3 and dups["libcupti"]["identical"]  # the fixture's bytes
    assert {f["flavour"] for f in dups["libnvrtc"]["copies"]} == {"", "alt"}
    assert {f["package"] for f in dups["libnvjpeg"]["copies"]} == {"nvidia/cu13", "torchvision.libs"}
    assert "present more than once: 3 libraries" in proc.stdout
    assert re.search(r"^CUDA library files: 12, ", proc.stdout), proc.stdout.splitlines()[0]


# -- a real build, opt-in: buildah and the local base image of `make docker-check` ------------


def _buildah_reason():
    import os
    import shutil

    if os.environ.get("DALI_MIXUP_BUILDAH") != "1":
        return "set DALI_MIXUP_BUILDAH=1 to run buildah here (root; the base image `make docker-check` makes)"
    if shutil.which("buildah") is None or shutil.which("podman") is None:
        return "buildah and podman are not installed (make docker-check installs them)"
    if subprocess.run(["podman", "image", "exists", "localhost/dali-mixup-base:bookworm"]).returncode != 0:
        return "no localhost/dali-mixup-base:bookworm: run `make docker-check` once"
    return None


@pytest.mark.skipif(_buildah_reason() is not None, reason=str(_buildah_reason()))
def test_buildah_stops_a_mismatched_line_before_any_download(tmp_path):
    """The deps stage built for real: CUDA_EXTRA=cuda12 with the CUDA 13 index stops at
    `cuda-line.sh args`, the first RUN (seconds, nothing downloaded)."""
    proc = subprocess.run(
        ["buildah", "bud", "--isolation", "chroot", "--layers", "--force-rm", "--target", "deps",
         "--build-arg", "BASE_IMAGE=localhost/dali-mixup-base:bookworm", "--build-arg", "CUDA_EXTRA=cuda12",
         "--build-arg", "TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130", "-f", str(DOCKERFILE), str(ROOT)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    steps = re.findall(r"^STEP \d+/\d+: (.*)$", proc.stdout, re.M)
    assert steps and steps[-1] == "RUN sh /src/docker/cuda-line.sh args", steps
    assert "CUDA_EXTRA=cuda12 does not match TORCH_INDEX_URL" in proc.stdout + proc.stderr
