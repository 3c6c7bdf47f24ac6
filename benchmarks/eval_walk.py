"""The eval walk: which files of score_sde/ an eval run passes through, and how often it climbs.

Trains a tiny DDPM on scikit-learn's 8x8 digits for 2 steps, then traces `--mode=eval` (eval loss,
bits/dim, samples and FID with random Inception weights) with `sys.setprofile` and prints:
- files: the distinct score_sde/ files whose functions run;
- climbs: calls from a file in a lower layer into a file of a higher one, counted once per
  (caller function, callee function), split into calls through an import of the higher module
  (an arrow running back up) and calls of a function the caller was handed (a callback: the
  evaluators take plain callables, so the eval mode's closures run inside them);
- re-entries of run/modes/eval.py: calls into it from another file, once per caller function.

Layers, low to high: the method (score_sde/*.py, models/) < config/, data/, store/, evaluation/,
convert/ < run/ < run/modes/ < cli.py / api.py.

    python benchmarks/eval_walk.py
"""

from __future__ import annotations

import io
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "score_sde") + os.sep


def layer(rel: str) -> int:
    """0 method, 1 services, 2 run/, 3 run/modes/, 4 cli/api."""
    if rel.startswith("run/modes/"):
        return 3
    if rel.startswith("run/"):
        return 2
    if rel in ("cli.py", "api.py"):
        return 4
    if "/" in rel and not rel.startswith("models/"):
        return 1
    return 0


def imports(rel: str) -> set[str]:
    """The score_sde modules (as paths relative to score_sde/) that file `rel` imports anywhere."""
    import ast

    out = set()
    tree = ast.parse(open(os.path.join(PKG, rel)).read())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("score_sde"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("score_sde")]
        for name in names:
            base = name.replace(".", "/")[len("score_sde/") :]
            out.update({base + ".py", base + "/__init__.py"})
    return out


def main() -> None:
    import numpy as np

    sys.path.insert(0, ROOT)
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from configs.vp.ddpm import cifar10  # noqa: F401
    from score_sde import parallel
    from score_sde.config import from_config
    from score_sde.evaluation import evaluator, inception
    from score_sde.run import modes

    root = tempfile.mkdtemp()
    weights = os.path.join(root, "inception.npz")
    np.savez(weights, **inception.random_flat_weights(0))
    stats = os.path.join(root, "stats.npz")
    c = cifar10.get_config()
    c.data.dataset, c.data.image_size, c.data.num_channels = "digits", 8, 1
    c.data.random_flip = False
    m = c.model
    m.nf, m.ch_mult, m.num_res_blocks, m.attn_resolutions, m.num_scales = 32, (1,), 1, (), 50
    c.training.batch_size, c.training.n_iters, c.training.snapshot_sampling = 16, 2, False
    c.sampling.batch_size = 8
    e = c.eval
    e.begin_ckpt, e.batch_size, e.num_bpd_examples = -1, 16, 16
    e.enable_sampling, e.num_samples, e.enable_bpd, e.rtol, e.atol = True, 8, True, 1e-2, 1e-2
    e.inception_weights, e.fid_stats = weights, stats
    mesh = parallel.make_mesh()
    evaluator.compute_dataset_statistics(
        from_config(c).data,
        "train",
        stats,
        batch_size=16,
        mesh=mesh,
        max_examples=16,
        weights=weights,
    )
    workdir = os.path.join(root, "run")
    modes.run("train", c, workdir, stream=io.StringIO())

    edges: set[tuple[str, str, str, str]] = set()

    def profile(frame, event, arg):
        if event != "call":
            return
        callee = frame.f_code.co_filename
        caller = frame.f_back.f_code.co_filename if frame.f_back else ""
        if callee.startswith(PKG) and caller.startswith(PKG) and callee != caller:
            edges.add(
                (
                    caller[len(PKG) :],
                    frame.f_back.f_code.co_name,
                    callee[len(PKG) :],
                    frame.f_code.co_name,
                )
            )

    sys.setprofile(profile)
    try:
        modes.run("eval", c, workdir, stream=io.StringIO())
    finally:
        sys.setprofile(None)
    files = sorted({e[0] for e in edges} | {e[2] for e in edges})
    climbs = sorted(e for e in edges if layer(e[2]) > layer(e[0]))
    reentries = sorted(
        {(e[0], e[1]) for e in edges if e[2] == "run/modes/eval.py" and e[0] != "run/modes/eval.py"}
    )
    print(f"files: {len(files)}")
    for f in files:
        print(f"  {f}")
    by_import = [c for c in climbs if c[2] in imports(c[0])]
    print(f"climbs: {len(climbs)} ({len(by_import)} through an import, the rest callbacks)")
    for a, fa, b, fb in climbs:
        how = "import" if (a, fa, b, fb) in by_import else "callback"
        print(f"  {a}:{fa} -> {b}:{fb} ({how})")
    print(f"re-entries of run/modes/eval.py: {len(reentries)}")
    for a, fa in reentries:
        print(f"  from {a}:{fa}")


if __name__ == "__main__":
    main()
