"""drawbridge.toml taken out of ConfigMaps, for `drawbridge check` to read."""

import os

from k8s_validate import manifests


def extract(out_dir, paths):
    """Writes drawbridge.toml of every ConfigMap in `paths` to `out_dir` and returns the files, in
    order. Each name says where it came from: ``NN-<path>-<ConfigMap name>.toml``, with NN counting
    from 01 per call and an absolute path shortened to its file name."""
    written = []
    for path in paths:
        for cm in manifests.find(manifests.load([path]), "ConfigMap"):
            text = (cm.get("data") or {}).get("drawbridge.toml")
            if text is None:
                continue
            rel = path if not os.path.isabs(path) else os.path.basename(path)
            base = rel.rsplit(".", 1)[0].replace("/", "-")
            dest = os.path.join(out_dir, f"{len(written) + 1:02d}-{base}-{cm['metadata']['name']}.toml")
            with open(dest, "w") as f:
                f.write(text)
            written.append(dest)
    return written
