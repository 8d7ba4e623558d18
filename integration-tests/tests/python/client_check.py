"""Drives kube-apiserver with the official Python client (PyPI `kubernetes`):
CRUD, selectors, patch, watch from a resourceVersion, and custom objects.
Exits non-zero on the first failed expectation."""

import sys
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config()
core = client.CoreV1Api()
ns = "default"


def expect(cond, what):
    if not cond:
        print("FAILED:", what, file=sys.stderr)
        sys.exit(1)


cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py", labels={"from": "python"}), data={"a": "1"})
created = core.create_namespaced_config_map(ns, cm)
expect(created.metadata.uid, "create returns a uid")
rv = created.metadata.resource_version

got = core.read_namespaced_config_map("py", ns)
expect(got.data == {"a": "1"}, "read back the data")

listed = core.list_namespaced_config_map(ns, label_selector="from=python")
expect([i.metadata.name for i in listed.items] == ["py"], "label selector list")

patched = core.patch_namespaced_config_map("py", ns, {"data": {"b": "2"}})
expect(patched.data == {"a": "1", "b": "2"}, "strategic merge patch")

got.data = {"c": "3"}
try:
    core.replace_namespaced_config_map("py", ns, got)
    expect(False, "a stale replace must fail")
except ApiException as e:
    expect(e.status == 409, "stale replace is 409, got %s" % e.status)

try:
    core.read_namespaced_config_map("missing", ns)
    expect(False, "missing object must fail")
except ApiException as e:
    expect(e.status == 404, "missing is 404")

# Watch from the creation's resourceVersion sees the patch, then the delete.
# The generated client reads a ConfigMap's delete as a V1Status, as upstream
# answers it: Success, naming the resource.
st = core.delete_namespaced_config_map("py", ns)
expect(st.status == "Success" and st.details.name == "py" and st.details.kind == "configmaps",
       "delete answers a Status, got %s" % st)
w = watch.Watch()
types = []
for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=5):
    if ev["object"].metadata.name == "py":
        types.append(ev["type"])
    if len(types) == 2:
        w.stop()
expect(types == ["MODIFIED", "DELETED"], "watch events %s" % types)

# Custom resources.
ext = client.ApiextensionsV1Api()
crd = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.org"},
    "spec": {
        "group": "example.org",
        "scope": "Namespaced",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}},
        }],
    },
}
ext.create_custom_resource_definition(crd)
custom = client.CustomObjectsApi()
body = {"apiVersion": "example.org/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"size": 1}}
for _ in range(50):
    try:
        custom.create_namespaced_custom_object("example.org", "v1", ns, "gadgets", body)
        break
    except ApiException as e:
        if e.status != 404:
            raise
        time.sleep(0.1)
custom.patch_namespaced_custom_object("example.org", "v1", ns, "gadgets", "g1", {"spec": {"size": 5}})
g = custom.get_namespaced_custom_object("example.org", "v1", ns, "gadgets", "g1")
expect(g["spec"]["size"] == 5, "custom object merge patch")
items = custom.list_namespaced_custom_object("example.org", "v1", ns, "gadgets")["items"]
expect(len(items) == 1, "custom object list")
print("ok")
