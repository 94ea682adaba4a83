#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""What an owner pins in a release policy for one build, and the build manifest (docs/deploy.md; `make measure`).

    scripts/measure.py BUILD_DIR [--prefix DIR] [--runtime-config FILE] [--cache-config FILE]
                                 [--manifest FILE] [--json]

Installs BUILD_DIR (cmake --install) into DIR (default: a temporary directory), then prints
- the sim measurement of veil-runtime and veil-cache as installed, each with its sim_config file if one is given:
  SHA-384("VEIL-SIM-MEASUREMENT-V1" 0x00 || u64le(n) || executable || u64le(m) || config), lib/attest/tees/sim.c;
- the SHA-256 of every installed file;
- the Gramine trusted-file inputs of the two TEE programs (their ldd closure less the glibc Gramine brings), and
  says which hardware measurements are not computed here and why;
and writes the build manifest (CycloneDX 1.5 JSON, default BUILD_DIR/veil-build.cdx.json): the source digest, the
toolchain, the compile flags, every Debian package whose headers or libraries went into the build, and the hashes
above. Given the same source and toolchain, the manifest's bytes do not depend on the build directory or the time
(SOURCE_DATE_EPOCH, else the commit date, dates it). Standard library only, so that a third party needs nothing
else.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

SIM_DOMAIN = b"VEIL-SIM-MEASUREMENT-V1\0"
TEE_PROGRAMS = ("veil-runtime", "veil-cache")
# The libraries Gramine replaces with its own glibc build (shared/reference/deployment.md, 1.2): not trusted files.
GRAMINE_GLIBC = {"ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libmvec.so.1", "libpthread.so.0", "libdl.so.2",
                 "librt.so.1", "libresolv.so.2", "libutil.so.1", "libanl.so.1", "libnsl.so.1", "libnss_files.so.2",
                 "libnss_dns.so.2"}
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
NOT_COMPUTED = [
    "Gramine MRENCLAVE: not computed. It needs gramine-manifest and gramine-sgx-sign (and Gramine's runtime: "
    "libpal.so, its glibc), packaged neither in Debian 12 nor on PyPI (deploy/gramine holds the manifest templates). "
    "The trusted-file hashes above are the inputs that depend on this build.",
    "TDX MRTD/RTMRs: not computed. No offline tool is packaged in Debian 12 or on PyPI (pytdxmeasure reads RTMRs "
    "inside a running TD); deploy/cvm's image recipe has never been built here (no TDVF or TD to measure).",
    "SEV-SNP launch measurement: not computed. sev-snp-measure (PyPI) computes it offline from OVMF, kernel, initrd "
    "and command line, but measured direct boot needs the AmdSevX64 OVMF build, which Debian 12's ovmf lacks; "
    "deploy/cvm's image recipe has never been built here.",
]


def sim_measurement(exe: Path, config: Path | None) -> str:
    """The sim TEE's measurement of a program (lib/attest/tees/sim.c, sim_measure_files)."""
    h = hashlib.sha384(SIM_DOMAIN)
    for part in (exe.read_bytes(), config.read_bytes() if config is not None else b""):
        h.update(len(part).to_bytes(8, "little") + part)
    return h.hexdigest()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


def cmake_cache(build: Path) -> dict[str, str]:
    out = {}
    for line in (build / "CMakeCache.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*):[A-Z]+=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def compiler_id(build: Path) -> str:
    for f in sorted((build / "CMakeFiles").glob("*/CMakeCCompiler.cmake")):
        text = f.read_text()
        found = [re.search(rf'set\(CMAKE_C_COMPILER_{k} "([^"]*)"\)', text) for k in ("ID", "VERSION")]
        if all(found):
            return " ".join(m.group(1) for m in found if m)
    return ""


def source_files(src: Path) -> list[str]:
    """The files of the source tree as scripts/repro.sh copies them: git's list in a work tree, else a walk that
    skips build trees (directories with a CMakeCache.txt) and caches."""
    if (src / ".git").exists():
        out = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=src)
        return sorted(f for f in out.split("\0") if f and (src / f).is_file() and not (src / f).is_symlink())
    files = []
    for root, dirs, names in os.walk(src):
        if Path(root, "CMakeCache.txt").exists():
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if d not in (".git", "__pycache__", ".pytest_cache")]
        files += [os.path.relpath(os.path.join(root, n), src) for n in names
                  if not n.endswith(".pyc") and not os.path.islink(os.path.join(root, n))]
    return sorted(files)


def source_identity(src: Path) -> dict[str, str]:
    """SHA-256 over (path, SHA-256 of the file) of every source file: the same for a clone of a commit and for
    `git archive` of it; plus the commit and whether the work tree differs from it, where git can tell."""
    h = hashlib.sha256()
    files = source_files(src)
    for f in files:
        h.update(f.encode() + b"\0" + bytes.fromhex(sha256(src / f)) + b"\n")
    out = {"veil:source:digest": h.hexdigest(), "veil:source:files": str(len(files))}
    if (src / ".git").exists():
        out["veil:source:commit"] = run("git", "rev-parse", "HEAD", cwd=src).strip()
        out["veil:source:modified"] = "true" if run("git", "status", "--porcelain", cwd=src).strip() else "false"
    return out


def build_epoch(src: Path) -> int | None:
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        return int(os.environ["SOURCE_DATE_EPOCH"])
    if (src / ".git").exists():
        return int(run("git", "log", "-1", "--format=%ct", cwd=src).strip())
    return None


class Dpkg:
    """Which Debian package owns a file, and its version (empty where dpkg does not know the file)."""

    def __init__(self) -> None:
        self.owner: dict[str, str] = {}
        info = Path("/var/lib/dpkg/info")
        for lst in sorted(info.glob("*.list")) if info.is_dir() else []:
            pkg = lst.name[:-len(".list")]
            for line in lst.read_text(errors="replace").splitlines():
                self.owner.setdefault(line, pkg)
        self.versions: dict[str, tuple[str, str, str]] = {}

    def package_of(self, path: str) -> str:
        p = Path(path)
        candidates = [str(p), str(p.resolve())]
        for c in list(candidates):  # merged /usr: dpkg may list either spelling
            candidates.append(c[len("/usr"):] if c.startswith("/usr/") else "/usr" + c)
        for c in candidates:
            if c in self.owner:
                return self.owner[c]
        return ""

    def describe(self, pkgs: set[str]) -> dict[str, tuple[str, str, str]]:
        missing = sorted(p for p in pkgs if p and p not in self.versions)
        if missing and shutil.which("dpkg-query"):
            out = run("dpkg-query", "-W", "-f=${binary:Package}\t${Version}\t${Architecture}\t${source:Package}\n",
                      *missing)
            for line in out.splitlines():
                name, version, arch, source = line.split("\t")
                self.versions[name] = (version, arch, source)
                self.versions[name.split(":")[0]] = (version, arch, source)
        return {p: self.versions.get(p, ("", "", "")) for p in pkgs if p}


def install(build: Path, prefix: Path) -> list[str]:
    subprocess.run(["cmake", "--install", str(build), "--prefix", str(prefix)], check=True,
                   stdout=subprocess.DEVNULL)
    return sorted(str(p.relative_to(prefix)) for p in prefix.rglob("*") if p.is_file() and not p.is_symlink())


def ldd(binary: Path) -> list[str]:
    """The shared libraries the dynamic loader maps for a program, by absolute path (its ldd closure)."""
    out = run("ldd", str(binary))
    libs = []
    for line in out.splitlines():
        m = re.match(r"^\s*(\S+ => )?(/\S+) \(0x", line)
        if m:
            libs.append(m.group(2))
    return libs


def header_inputs(build: Path, src: Path) -> set[str]:
    """System headers the compiler read for the installed targets (the depfiles; tests and benchmarks left out)."""
    found: set[str] = set()
    for dep in (build / "CMakeFiles").glob("*.dir/**/*.o.d"):
        if dep.relative_to(build / "CMakeFiles").parts[0].startswith("bench_"):
            continue
        for tok in dep.read_text().replace("\\\n", " ").split():
            if tok.startswith("/") and not tok.endswith(":") and not tok.startswith((str(src), str(build))):
                found.add(os.path.normpath(tok))
    return found


def toolchain_files(cache: dict[str, str]) -> dict[str, str]:
    cc = cache.get("CMAKE_C_COMPILER", "cc")
    files = {"compiler": shutil.which(cc) or cc}
    for role, key in (("archiver", "CMAKE_AR"), ("ranlib", "CMAKE_RANLIB"), ("linker", "CMAKE_LINKER")):
        if cache.get(key):
            files[role] = cache[key]
    for role, arg in (("cc1", "-print-prog-name=cc1"), ("assembler", "-print-prog-name=as"),
                      ("libgcc", "-print-libgcc-file-name"), ("crt1", "-print-file-name=crt1.o"),
                      ("libc", "-print-file-name=libc.so")):
        try:
            p = run(files["compiler"], arg).strip()
        except (OSError, subprocess.CalledProcessError):
            continue
        files[role] = shutil.which(p) or p
    return files


def normalise(text: str, src: Path, build: Path) -> str:
    return text.replace(str(build), "${BUILD_DIR}").replace(str(src), "${SOURCE_DIR}")


def target_flags(build: Path, src: Path) -> dict[str, str]:
    flags = {}
    for fm in sorted((build / "CMakeFiles").glob("*.dir/flags.make")):
        target = fm.parent.name[:-len(".dir")]
        if target.startswith("bench_"):
            continue
        vals = dict(re.findall(r"^(C_DEFINES|C_FLAGS) = (.*)$", fm.read_text(), re.M))
        flags[target] = normalise(" ".join(v for k, v in sorted(vals.items())), src, build)
    return flags


def purl(pkg: str, version: str, arch: str, distro: str) -> str:
    q = f"?arch={arch}" + (f"&distro={distro}" if distro else "")
    return f"pkg:deb/debian/{pkg.split(':')[0]}@{version.replace(':', '%3A')}{q}"


def debian_release() -> str:
    p = Path("/etc/debian_version")
    return "debian-" + p.read_text().strip() if p.exists() else ""


def measure(build: Path, prefix: Path, configs: dict[str, Path | None]) -> dict:
    cache = cmake_cache(build)
    src = Path(cache["CMAKE_HOME_DIRECTORY"]).resolve()
    files = install(build, prefix)
    result: dict = {"build_type": cache.get("CMAKE_BUILD_TYPE", ""), "files": {}, "sim": {}, "trusted_files": {}}
    for f in files:
        result["files"][f] = sha256(prefix / f)
    for name in TEE_PROGRAMS:
        exe = prefix / "bin" / name
        if not exe.is_file():
            result["sim"][name] = None
            continue
        cfg = configs.get(name)
        result["sim"][name] = {"measurement": sim_measurement(exe, cfg),
                               "config": None if cfg is None else {"path": str(cfg), "sha256": sha256(cfg)}}
        trusted = {f"bin/{name}": result["files"][f"bin/{name}"]}
        if CA_BUNDLE.is_file():
            trusted[str(CA_BUNDLE)] = sha256(CA_BUNDLE)
        for lib in ldd(exe):
            if Path(lib).name not in GRAMINE_GLIBC:
                trusted[lib] = sha256(Path(lib))
        result["trusted_files"][name] = trusted
    result["not_computed"] = NOT_COMPUTED
    result["_context"] = {"cache": cache, "src": src}
    return result


def manifest(build: Path, prefix: Path, result: dict) -> dict:
    cache, src = result["_context"]["cache"], result["_context"]["src"]
    dpkg = Dpkg()
    roles: dict[str, set[str]] = {}

    def add(pkg: str, role: str) -> None:
        if pkg:
            roles.setdefault(pkg, set()).add(role)

    tools = toolchain_files(cache)
    for role, path in tools.items():
        add(dpkg.package_of(path), f"toolchain:{role}")
    for h in header_inputs(build, src):
        add(dpkg.package_of(h), "build:headers")
    linked: dict[str, set[str]] = {}
    unowned: dict[str, str] = {}  # libraries dpkg does not know: recorded by their hash
    for f in result["files"]:
        p = prefix / f
        if p.read_bytes()[:4] == b"\x7fELF" and (f.startswith("bin/") or ".so" in f):
            for lib in ldd(p):
                pkg = dpkg.package_of(lib)
                add(pkg, "runtime:linked")
                if not pkg:
                    unowned[lib] = sha256(Path(lib))
                linked.setdefault(f, set()).add(f"deb:{pkg}" if pkg else f"file:{lib}")
    versions = dpkg.describe(set(roles))
    distro = debian_release()
    components = []
    for f, digest in result["files"].items():
        comp: dict = {"type": "file", "bom-ref": f"file:{f}", "name": f,
                      "hashes": [{"alg": "SHA-256", "content": digest}]}
        name = Path(f).name
        sim = result["sim"].get(name) if f.startswith("bin/") else None
        if sim:
            comp["properties"] = [{"name": "veil:sim:measurement", "value": sim["measurement"]}]
            if sim["config"] is not None:
                comp["properties"].append({"name": "veil:sim:config:sha256", "value": sim["config"]["sha256"]})
        components.append(comp)
    for pkg in sorted(roles):
        version, arch, source = versions.get(pkg, ("", "", ""))
        comp = {"type": "library", "bom-ref": f"deb:{pkg}", "name": pkg.split(":")[0], "version": version,
                "properties": [{"name": "veil:role", "value": r} for r in sorted(roles[pkg])]}
        if version:
            comp["purl"] = purl(pkg, version, arch, distro)
        if source and source != pkg.split(":")[0]:
            comp["properties"].append({"name": "veil:debian:source", "value": source})
        components.append(comp)
    components += [{"type": "library", "bom-ref": f"file:{lib}", "name": lib,
                    "hashes": [{"alg": "SHA-256", "content": digest}]} for lib, digest in sorted(unowned.items())]
    dependencies = [{"ref": f"file:{f}", "dependsOn": sorted(refs)} for f, refs in sorted(linked.items())]
    props = [{"name": k, "value": v} for k, v in sorted(source_identity(src).items())]
    props += [{"name": "veil:build:type", "value": cache.get("CMAKE_BUILD_TYPE", "")},
              {"name": "veil:build:options", "value": " ".join(f"{k}={cache[k]}" for k in sorted(cache)
                                                                if k.startswith("VEIL_") and k.isupper()
                                                                and k not in ("VEIL_DNNL_LIBRARY",
                                                                              "VEIL_DNNL_INCLUDE_DIR",
                                                                              "VEIL_GOMP_LIBRARY"))},
              {"name": "veil:toolchain:compiler", "value": compiler_id(build)},
              {"name": "veil:toolchain:cmake", "value": run(cache.get("CMAKE_COMMAND", "cmake"),
                                                            "--version").splitlines()[0]}]
    if distro:
        props.append({"name": "veil:toolchain:distribution", "value": distro})
    props += [{"name": f"veil:flags:{t}", "value": v} for t, v in target_flags(build, src).items()]
    epoch = build_epoch(src)
    metadata: dict = {
        "tools": {"components": [{"type": "application", "name": "veil scripts/measure.py"}]},
        "component": {"type": "application", "bom-ref": "veil", "name": "veil",
                      "version": cache.get("CMAKE_PROJECT_VERSION", ""), "properties": props},
    }
    if epoch is not None:
        metadata["timestamp"] = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    bom = {"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "metadata": metadata,
           "components": components, "dependencies": dependencies}
    # A serial number derived from the contents, so that the same build gives the same document.
    digest = hashlib.sha256(json.dumps(bom, sort_keys=True).encode()).hexdigest()
    return {"bomFormat": "CycloneDX", "specVersion": "1.5",
            "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'veil-build:' + digest)}", **bom}


def report(result: dict, manifest_path: Path | None) -> str:
    lines = [f"Veil build measurements ({result['build_type'] or 'no build type'} build)", "",
             "sim measurement (SHA-384; a release policy's sim.measurements[]):"]
    for name in TEE_PROGRAMS:
        sim = result["sim"].get(name)
        if sim is None:
            lines.append(f"  {name:<13} not built")
            continue
        cfg = "no sim_config" if sim["config"] is None else f"sim_config {sim['config']['path']}"
        lines.append(f"  {name:<13} {sim['measurement']}  ({cfg})")
    lines += ["", "SHA-256 of every installed file:"]
    lines += [f"  {d}  {f}" for f, d in result["files"].items()]
    for name, trusted in result["trusted_files"].items():
        lines += ["", f"Gramine trusted files of {name} on this host (its ldd closure less Gramine's glibc, the CA "
                      "bundle; dlopen()ed modules not included):"]
        lines += [f"  {d}  {f}" for f, d in trusted.items()]
    lines += ["", "Hardware measurements:"] + [f"  - {n}" for n in result["not_computed"]]
    if manifest_path is not None:
        lines += ["", f"Build manifest (CycloneDX 1.5): {manifest_path}"]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", type=Path, help="a configured and built CMake build directory")
    ap.add_argument("--prefix", type=Path, help="install there and keep it (default: a temporary directory)")
    ap.add_argument("--runtime-config", type=Path, help="veil-runtime's sim_config file, measured with it")
    ap.add_argument("--cache-config", type=Path, help="veil-cache's sim_config file, measured with it")
    ap.add_argument("--manifest", type=Path, help="where to write the build manifest "
                                                  "(default BUILD/veil-build.cdx.json; '-' for none)")
    ap.add_argument("--json", action="store_true", help="print the measurements as JSON")
    a = ap.parse_args()
    build = a.build.resolve()
    if not (build / "CMakeCache.txt").is_file():
        print(f"measure: {a.build} is not a CMake build directory", file=sys.stderr)
        return 2
    configs = {"veil-runtime": a.runtime_config, "veil-cache": a.cache_config}
    tmp = None
    if a.prefix is None:
        tmp = tempfile.TemporaryDirectory(prefix="veil-measure.")
        prefix = Path(tmp.name)
    else:
        prefix = a.prefix.resolve()
    try:
        try:
            result = measure(build, prefix, configs)
        except subprocess.CalledProcessError as e:
            print(f"measure: {' '.join(map(str, e.cmd))} failed (is every installed target built?)", file=sys.stderr)
            return 1
        manifest_path = None if a.manifest == Path("-") else (a.manifest or build / "veil-build.cdx.json")
        if manifest_path is not None:
            doc = manifest(build, prefix, result)
            manifest_path.parent.mkdir(parents=True, exist_ok=True)
            manifest_path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        del result["_context"]
        if a.json:
            print(json.dumps(result, indent=2))
        else:
            print(report(result, manifest_path))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
