"""The checks, in the order they run, and the command line scripts/validate-k8s.sh calls.

Environment:
  DRAWBRIDGE_BIN  drawbridge binary for the config checks. Unset: `cargo build --bin drawbridge`
                  (a no-op when up to date) and target/debug/drawbridge.
  KEEP_WORK=1     keep the renders and extracted configs (path printed).

Ends with "k8s-validation: N passed, M failed" on stdout; exits 1 if M > 0, 2 if the checks could
not run at all.
"""

import argparse
import os
import shutil
import subprocess
import tempfile

from k8s_validate import chart, configs, dashboard, forward_auth, keys, manifests, rules, sessions
from k8s_validate.runner import Abort, Checks, Outcome, fails_with, log, run
from k8s_validate.tools import K8S_VERSION, Tools

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DASHBOARD = "deploy/grafana/drawbridge-dashboard.json"

# The shell scripts that install the tools and start this suite, for the shell linter.
SHELL_FILES = ("scripts/validate-k8s.sh", "scripts/k8s-tools.sh", "scripts/check-python.sh")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m k8s_validate", description=__doc__.splitlines()[0])
    ap.add_argument("--helm", required=True)
    ap.add_argument("--kubernetes-validate", required=True)
    ap.add_argument("--hadolint", required=True)
    ap.add_argument("--shellcheck", required=True)
    ap.add_argument("--promql-modules", required=True, help="a directory whose node_modules has the PromQL parser")
    ap.add_argument("--node", default="node")
    args = ap.parse_args(argv)
    tools = Tools(
        helm=args.helm,
        kubernetes_validate=args.kubernetes_validate,
        hadolint=args.hadolint,
        shellcheck=args.shellcheck,
        promql_modules=args.promql_modules,
        node=args.node,
    )
    os.chdir(ROOT)
    work = tempfile.mkdtemp(prefix="drawbridge-k8s.")
    keep = os.environ.get("KEEP_WORK") == "1"
    if keep:
        log(f"work directory: {work}")
    try:
        log(tools.versions())
        checks = Checks()
        lint_files(checks, tools)
        renders = chart_checks(checks, tools, work)
        deploy_yaml, deploy_dirs = deploy_checks(checks, tools)
        forward_auth_checks(checks, tools)
        dashboard_checks(checks, tools, work)
        drawbridge_checks(checks, tools, work, renders, deploy_yaml, deploy_dirs)
        return checks.summary()
    except Abort as e:
        log(f"validate-k8s: {e}")
        return 2
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def lint_files(checks, tools):
    """The Dockerfile, and the shell scripts that start this suite."""
    checks.check("hadolint Dockerfile", run, [tools.hadolint, "Dockerfile"])
    # -x: follow what they source (the tools file).
    checks.check(f"shellcheck {' '.join(SHELL_FILES)}", run, [tools.shellcheck, "-x", *SHELL_FILES])


def chart_checks(checks, tools, work):
    """Lints and renders the chart with every value set, checks each render, and checks the values
    it must refuse. Returns the renders."""
    renders = []
    for name, vargs in chart.value_sets():
        out = os.path.join(work, f"render-{name}.yaml")
        err = os.path.join(work, "template.err")
        checks.check(f"helm lint --strict ({name})", chart.lint, tools, vargs)
        if not chart.render(tools, vargs, out, err):
            checks.record(f"helm template ({name})", Outcome(False, chart.read(err)))
            continue
        checks.record(f"helm template ({name})", Outcome(True))
        renders.append(out)
        checks.check(f"kubernetes-validate {K8S_VERSION} --strict (chart, {name})", tools.kubevalidate_render, out)
        checks.check(f"manifest checks (chart, {name})", manifest_checks, [out], True)
    checks.check("ci value sets cover every feature", chart.features, renders)
    for name, pattern, args in chart.REFUSALS:
        checks.must_fail(name, pattern, chart.template_argv(tools, *args))
    checks.check("integers render as TOML integers", chart.big_ints, tools, renders)
    checks.check("every render signs with one shared session key", chart.shared_session_key, renders)
    checks.check("a render without a cluster holds no session key", chart.no_key_without_cluster, renders)
    return renders


def deploy_checks(checks, tools):
    """The plain manifests: every deploy/ directory with YAML in it. Returns the files and the
    directories."""
    deploy_yaml, deploy_dirs = [], []
    for d in sorted(p for p in os.listdir("deploy") if os.path.isdir(os.path.join("deploy", p))):
        d = f"deploy/{d}"
        files = sorted(f"{d}/{f}" for f in os.listdir(d) if f.endswith(".yaml"))
        if not files or d == forward_auth.DIR:
            continue
        deploy_dirs.append(d)
        deploy_yaml += files
        checks.check(f"kubernetes-validate {K8S_VERSION} --strict ({d})", tools.kubevalidate, *files)
        checks.check(f"manifest checks ({d})", manifest_checks, files, False)
    return deploy_yaml, deploy_dirs


def forward_auth_checks(checks, tools):
    """The forward-auth examples: no drawbridge Deployment of their own, mostly CRDs."""
    builtin = [f"{forward_auth.DIR}/{f}" for f in forward_auth.BUILTIN_FILES]
    checks.check(f"kubernetes-validate {K8S_VERSION} --strict ({', '.join(builtin)})", tools.kubevalidate, *builtin)
    crds = ", ".join(f for f in forward_auth.CHECKS if f not in forward_auth.BUILTIN_FILES)
    checks.check(
        f"forward-auth examples (CRDs without an offline schema, YAML and fields only: {crds})",
        lambda: Outcome.of_problems(forward_auth.check_files()),
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    checks.check(f"nginx -t {forward_auth.DIR}/nginx.conf", forward_auth.nginx_t, nginx)


def manifest_checks(paths, helm):
    return Outcome.of_problems(manifests.check(manifests.load(paths), helm))


def dashboard_checks(checks, tools, work):
    def panels():
        errors, counts = dashboard.check_file(DASHBOARD)
        return Outcome.of_problems(errors, counts)

    checks.check("grafana dashboard", panels)
    # Every query parses as PromQL (after the Grafana variables are filled in).
    checks.check("grafana dashboard queries parse as PromQL", tools.promql_check, DASHBOARD)

    def rule_file():
        path = os.path.join(work, "prometheusrule.json")
        outcome = rules.as_dashboard(tools, path)
        return outcome if not outcome.ok else tools.promql_check(path)

    checks.check("PrometheusRule alerts on drawbridge's own metrics", rules.check, tools)
    checks.check("PrometheusRule expressions parse as PromQL", rule_file)


def drawbridge_checks(checks, tools, work, renders, deploy_yaml, deploy_dirs):
    """`drawbridge check` on drawbridge.toml of every ConfigMap, and on a mistake only drawbridge
    can see."""
    out_dir = os.path.join(work, "configs")
    os.makedirs(out_dir, exist_ok=True)
    tomls = configs.extract(out_dir, renders + deploy_yaml)
    # One config per render and per deploy/ directory at least.
    want = len(renders) + len(deploy_dirs)
    checks.check(
        f"drawbridge.toml found in every ConfigMap set ({len(tomls)})",
        lambda: Outcome(len(tomls) >= want, f"found {len(tomls)}, want at least {want}"),
    )
    bin_ = os.environ.get("DRAWBRIDGE_BIN") or "target/debug/drawbridge"
    # Unset, it is built always (a no-op when up to date), so that a stale binary never checks the
    # configs; a failed build is a failure, not a skip.
    build = ["cargo", "build", "--quiet", "--bin", "drawbridge"]
    if not os.environ.get("DRAWBRIDGE_BIN") and not checks.check("cargo build --bin drawbridge", run, build):
        bin_ = ""
    if not (bin_ and os.access(bin_, os.X_OK)):
        where = f" at {bin_}" if bin_ else ""
        checks.fail(
            "drawbridge check: no binary",
            f"drawbridge check: no binary{where} ({len(tomls)} configs unchecked)",
        )
        return
    # --skip-files: the configs name the files of the pod (/etc/drawbridge/tls/tls.crt, ...), which
    # do not exist here; without it `check` stops at "tls: cannot read /etc/drawbridge/tls/tls.crt".
    # Everything else (syntax, unknown keys, values, cross-field rules) is still checked.
    for t in tomls:
        checks.check(f"drawbridge check {os.path.basename(t)}", run, [bin_, "check", "--skip-files", "--config", t])

    # And the other way round: a mistake in extraConfig, which the chart's schema cannot see, is
    # caught by drawbridge itself.
    def typo_rejected():
        typo = os.path.join(work, "typo.yaml")
        with open(typo, "w") as f:
            proc = subprocess.run(
                chart.template_argv(tools, "--set-string", "extraConfig=[upstream_typo]"),
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.PIPE,
                text=True,
                check=False,
            )
        if proc.returncode != 0:
            return Outcome(False, f"helm template with the typo failed itself:\n{proc.stderr}")
        extracted = configs.extract(out_dir, [typo])
        if not extracted:
            return Outcome(False, "the render with the typo has no drawbridge.toml")
        return fails_with("upstream_typo", [bin_, "check", "--skip-files", "--config", extracted[0]])

    checks.check("drawbridge check rejects an unknown section in extraConfig", typo_rejected)

    # Every config key drawbridge has can be set through a chart value, and lands in the file.
    key_list = keys.config_keys(bin_)
    key_work = os.path.join(work, "keys")
    os.makedirs(key_work, exist_ok=True)
    for key, default in key_list:
        checks.check(
            f"config key {key} set through the chart, accepted by drawbridge check",
            keys.check_key,
            tools,
            bin_,
            chart.template_argv,
            key,
            default,
            key_work,
        )
    checks.check(
        "every sample in keys.py names a key drawbridge has",
        lambda: Outcome.of_problems([f"{k}: no such key" for k in keys.stale_samples(key_list)]),
    )

    # One shared session key: sessions and logouts cross the pods of a render.
    for name, vargs in sessions.SHAPES:
        checks.check(
            f"sessions cross the pods of a render ({name}), real drawbridge processes",
            sessions.check_shape,
            tools,
            bin_,
            vargs,
        )
