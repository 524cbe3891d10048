"""The Dockerfile, .dockerignore, docker/compose.yaml and constraints.txt, read
with real parsers: dockerfile-parse for the Dockerfile (line continuations, stages, ARG
substitution) and PyYAML for the compose file. These checks run with every `make test`; building
and running the image for real is `make docker-check` (docker/check.sh, buildah and podman, too
heavy for every run), whose last run docker/README.md records."""

import importlib
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


def test_base_image_is_a_pinned_arg():
    args = global_args()
    assert "BASE_IMAGE" in args, "the base image must be a global ARG (ARG BASE_IMAGE=... before the first FROM)"
    image = args["BASE_IMAGE"]
    name, _, tag = image.rpartition(":")
    assert name == "nvidia/cuda", image
    assert re.fullmatch(r"\d+\.\d+\.\d+-base-ubuntu\d+\.\d+", tag), (
        f"tag {tag!r} is not a pinned x.y.z `base` tag: torch, DALI and CuPy bring their CUDA libraries as "
        "wheels, and a `runtime` base would carry them twice")
    assert tag.split(".")[0] == "13", "the default image is the CUDA 13 line (the cuda13 extra)"
    names = set()
    for n, instrs in stages()[1:]:
        source = instrs[0]["value"].split()[0]
        assert source == "${BASE_IMAGE}" or source in names, f"stage {n} starts FROM {source}"
        names.add(n)


def test_stages_deps_wheel_runtime():
    names = [n for n, _ in stages()[1:]]
    assert names == ["deps", "wheel", "runtime"], names
    assert stage("wheel")[0]["value"].split()[0] == "deps"
    # the runtime is the deps stage plus small layers: the dependencies are one shared layer,
    # not a copy that every rebuild checksums and that is stored twice
    assert final_stage()[0]["value"].split()[0] == "deps"
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
    install_deps = next(k for k, (ins, v) in enumerate(kinds) if ins == "RUN" and "pip install -c /src/constraints.txt -r" in v)
    # only pyproject.toml and constraints.txt are in the image when the dependencies are installed,
    # and the deps stage (which the runtime starts from) never sees the source
    copies = [v for ins, v in kinds if ins == "COPY"]
    assert copies == ["pyproject.toml /src/pyproject.toml", "constraints.txt /src/constraints.txt"], copies
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


def test_driver_capabilities_include_video():
    parser = dockerfile_parse.DockerfileParser(path=str(DOCKERFILE))
    caps = parser.envs.get("NVIDIA_DRIVER_CAPABILITIES", "")  # the final stage's environment
    assert set(caps.split(",")) >= {"compute", "utility", "video"}, caps
    assert compose()["x-image"]["environment"]["NVIDIA_DRIVER_CAPABILITIES"] == caps


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


def test_cpu_variant_needs_no_cuda_and_no_cupy():
    """CUDA_EXTRA=cpu passes the deps stage's CUDA check without CUDA_VERSION, and only CUDA variants
    import CuPy (the runtime's import check)."""
    guard = next(i["value"] for i in stage("deps") if i["instruction"] == "RUN" and "CUDA_VERSION" in i["value"])
    for extra, cuda, ok in (("cpu", "", True), ("cuda13", "13.0.1", True), ("cuda12", "12.8.1", True),
                            ("cuda13", "12.8.1", False), ("cuda13", "", False), ("cuda", "", False)):
        env = {"PATH": "/usr/bin:/bin", "CUDA_EXTRA": extra}
        if cuda:
            env["CUDA_VERSION"] = cuda
        proc = subprocess.run(["sh", "-c", guard], env=env, capture_output=True, text=True)
        assert (proc.returncode == 0) == ok, (extra, cuda, proc.stderr)
        if not ok:
            assert proc.stderr.startswith(f"CUDA_EXTRA={extra} does not match the base image"), proc.stderr
    runtime_runs = " ".join(i["value"] for i in final_stage() if i["instruction"] == "RUN")
    assert re.search(r'if \[ "\$\{CUDA_EXTRA\}" != cpu \]; then python3 -c "import cupy', runtime_runs)
    assert "cpu" in pyproject()["project"]["optional-dependencies"]
    assert not any(r.startswith("cupy") for r in pyproject()["project"]["optional-dependencies"]["cpu"])


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
    cuda_extra, more = builder["CUDA_EXTRA"], [e for e in builder["EXTRAS"].split(",") if e]
    for e in [cuda_extra, *more]:
        assert e in extras, f"the Dockerfile installs extra {e!r}, which pyproject.toml does not define"
    major = global_args()["BASE_IMAGE"].rsplit(":", 1)[1].split(".")[0]
    assert cuda_extra == f"cuda{major}", f"{cuda_extra} with a CUDA {major} base image"
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
    builder = arg_defaults(stage("deps"))
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
    image = {builder["CUDA_EXTRA"], *[e for e in builder["EXTRAS"].split(",") if e]}
    assert image <= documented, f"the image installs extras the README does not document: {sorted(image - documented)}"
    assert {"cuda12", "cuda13"} <= documented, "both CUDA lines (the image's build argument) are documented"


def test_cuda12_variant_in_docker_readme_is_consistent():
    text = (ROOT / "docker" / "README.md").read_text()
    m = re.search(r"BASE_IMAGE=(nvidia/cuda:(\d+)\.\d+\.\d+-base-ubuntu[\d.]+)", text)
    assert m and m.group(2) == "12", "docker/README.md shows the CUDA 12 build argument"
    assert "CUDA_EXTRA=cuda12" in text and "whl/cu12" in text
    assert "cuda12" in pyproject()["project"]["optional-dependencies"]
    assert re.search(r"docker run\b[^\n]*--gpus all", text), "docker/README.md shows `docker run --gpus all`"


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
