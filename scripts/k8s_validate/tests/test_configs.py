"""configs.extract: one file per ConfigMap with a drawbridge.toml, named after where it came from."""

import os
import tempfile
import unittest

import yaml

from k8s_validate import configs
from k8s_validate.tests.fixtures import EDGE_TOML, edge


def configmap(name, data):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


class Extract(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.out = os.path.join(self.tmp.name, "out")
        os.mkdir(self.out)

    def write(self, path, docs):
        with open(path, "w") as f:
            yaml.safe_dump_all(docs, f)
        return path

    def test_configmaps_with_a_toml_each_give_one_file_in_order(self):
        render = self.write(
            os.path.join(self.tmp.name, "render-default.yaml"),
            edge()
            + [
                configmap("other", {"app.toml": "x = 1"}),  # no drawbridge.toml: skipped
                configmap("empty", None),  # no data at all: skipped
                configmap("second", {"drawbridge.toml": "[admin]\n"}),
            ],
        )
        files = configs.extract(self.out, [render])
        self.assertEqual(
            [os.path.basename(f) for f in files],
            ["01-render-default-drawbridge.toml", "02-render-default-second.toml"],
        )
        with open(files[0]) as f:
            self.assertEqual(f.read(), EDGE_TOML)
        with open(files[1]) as f:
            self.assertEqual(f.read(), "[admin]\n")

    def test_relative_path_names_the_file_after_its_directory(self):
        cwd = os.getcwd()
        self.addCleanup(os.chdir, cwd)
        os.chdir(self.tmp.name)
        os.makedirs("deploy/edge")
        self.write("deploy/edge/configmap.yaml", [configmap("drawbridge", {"drawbridge.toml": ""})])
        self.write("deploy/edge/service.yaml", [d for d in edge() if d["kind"] == "Service"])
        files = configs.extract(self.out, ["deploy/edge/configmap.yaml", "deploy/edge/service.yaml"])
        self.assertEqual([os.path.basename(f) for f in files], ["01-deploy-edge-configmap-drawbridge.toml"])

    def test_no_configmap_gives_no_file(self):
        path = self.write(os.path.join(self.tmp.name, "x.yaml"), [d for d in edge() if d["kind"] != "ConfigMap"])
        self.assertEqual(configs.extract(self.out, [path]), [])
        self.assertEqual(os.listdir(self.out), [])


if __name__ == "__main__":
    unittest.main()
