#!/usr/bin/env python3
"""Fails if template.yaml, once SAM has transformed it, has a circular dependency.

cfn-lint's E3004 skips cycles that touch AWS::Serverless::* resources and `sam validate`
does not look for them, yet CloudFormation refuses such a template at deploy time. A
cycle often appears only after the transform: an HTTP API's body references each
function's `live` alias, whose UpdatePolicy references its CodeDeploy deployment group,
whose alarm list references the DeploymentPreference alarms. So this script runs the
Serverless transform offline (samtranslator, installed with the SAM CLI; no AWS
account), then builds the resource graph from Ref, Fn::GetAtt, Fn::Sub and DependsOn
and looks for cycles, for each combination of the parameters that change the resources
(AuthMode, AlarmEmail). Conditions are evaluated, so a false Fn::If branch or a resource
whose condition is false adds no edge.

usage: check-template-cycles.py [template.yaml]   (make lint-deploy runs it)
"""

import copy
import itertools
import logging
import os
import re
import sys

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_REGION", os.environ["AWS_DEFAULT_REGION"])
# The transform's own warnings (feature toggles, unpublished metrics) are not ours.
logging.disable(logging.WARNING)

from samcli.lib.cfn_language_extensions.sam_integration import expand_language_extensions  # noqa: E402
from samcli.yamlhelper import yaml_parse  # noqa: E402
from samtranslator.translator.transform import transform  # noqa: E402

PSEUDO = {
    "AWS::AccountId": "123456789012",
    "AWS::NotificationARNs": [],
    "AWS::NoValue": None,
    "AWS::Partition": "aws",
    "AWS::Region": os.environ["AWS_DEFAULT_REGION"],
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/im/1",
    "AWS::StackName": "im-cycle-check",
    "AWS::URLSuffix": "amazonaws.com",
}

# The parameter values that add, drop or rewire resources; every combination is checked.
VARIANTS = {
    "AuthMode": [
        {"AuthMode": "tokens"},
        {
            "AuthMode": "authorizer",
            "JwtIssuer": "https://issuer.example.com",
            "JwtAudience": "audience",
            "AuthorizerAppId": "app",
        },
    ],
    "AlarmEmail": [{"AlarmEmail": ""}, {"AlarmEmail": "ops@example.com"}],
}


class NoManagedPolicies:
    """The transform's managed-policy loader: the template names none by name."""

    def load(self):
        return {}


def parameter_values(template, overrides):
    values = {}
    for name, p in (template.get("Parameters") or {}).items():
        if name in overrides:
            v = overrides[name]
        elif "Default" in p:
            v = p["Default"]
        else:
            sys.exit(f"check-template-cycles: parameter {name} has no default; add it to VARIANTS")
        if p.get("Type") == "CommaDelimitedList" and isinstance(v, str):
            v = [] if v == "" else v.split(",")
        values[name] = v if isinstance(v, list) else str(v)
    return values


class Evaluator:
    """Conditions and the few intrinsics they use, from parameter values."""

    def __init__(self, template, params):
        self.params = params
        self.conditions = template.get("Conditions") or {}
        self.cache = {}

    def value(self, v):
        if isinstance(v, dict) and len(v) == 1:
            (k, a), = v.items()
            if k == "Ref":
                if a in self.params:
                    return self.params[a]
                if a in PSEUDO:
                    return PSEUDO[a]
                raise ValueError(f"Ref {a} is not a parameter")
            if k == "Fn::Join":
                return a[0].join(str(x) for x in self.value(a[1]))
            if k == "Fn::Equals":
                return self.value(a[0]) == self.value(a[1])
            if k == "Fn::Not":
                return not self.value(a[0])
            if k == "Fn::And":
                return all(self.value(x) for x in a)
            if k == "Fn::Or":
                return any(self.value(x) for x in a)
            if k == "Condition":
                return self.condition(a)
            if k == "Fn::Select":
                return self.value(a[1])[int(self.value(a[0]))]
            raise ValueError(f"cannot evaluate {k}")
        if isinstance(v, list):
            return [self.value(x) for x in v]
        return v

    def condition(self, name):
        if name not in self.cache:
            self.cache[name] = bool(self.value(self.conditions[name]))
        return self.cache[name]


NO_VALUE = object()


def resolve_ifs(node, ev):
    """The template with each Fn::If replaced by its chosen branch (AWS::NoValue dropped)."""
    if isinstance(node, dict):
        if len(node) == 1 and "Fn::If" in node:
            name, yes, no = node["Fn::If"]
            return resolve_ifs(yes if ev.condition(name) else no, ev)
        if node == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        out = {}
        for k, v in node.items():
            v = resolve_ifs(v, ev)
            if v is not NO_VALUE:
                out[k] = v
        return out
    if isinstance(node, list):
        return [x for x in (resolve_ifs(x, ev) for x in node) if x is not NO_VALUE]
    return node


SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")


def references(node, local=frozenset()):
    """The logical ids (or parameter names) `node` refers to."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "Ref" and isinstance(v, str):
                yield v.split(".")[0]
            elif k == "Fn::GetAtt":
                yield (v.split(".")[0] if isinstance(v, str) else v[0])
            elif k == "Fn::Sub":
                text, variables = (v, {}) if isinstance(v, str) else (v[0], v[1])
                for name in SUB_VAR.findall(text):
                    name = name.strip().split(".")[0]
                    if name not in variables and name not in local:
                        yield name
                yield from references(variables, local)
            else:
                yield from references(v, local)
    elif isinstance(node, list):
        for x in node:
            yield from references(x, local)


def graph(resources):
    edges = {}
    for rid, r in resources.items():
        deps = set()
        for key in ("Properties", "UpdatePolicy", "CreationPolicy"):
            deps.update(references(r.get(key, {})))
        depends_on = r.get("DependsOn", [])
        deps.update([depends_on] if isinstance(depends_on, str) else depends_on)
        edges[rid] = sorted(d for d in deps if d in resources)
    return edges


def cycles(edges):
    """Tarjan's strongly connected components with more than one member (or a self
    reference), each as one concrete cycle through it."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = itertools.count()

    def visit(v):
        index[v] = low[v] = next(counter)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1 or v in edges[v]:
                found.append(sorted(scc))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [(scc, one_cycle(edges, set(scc))) for scc in found]


def one_cycle(edges, scc):
    start = min(scc)
    path, seen = [start], {start: None}
    queue = [start]
    while queue:  # breadth first, back to start within the component
        v = queue.pop(0)
        for w in edges[v]:
            if w == start:
                node, back = v, []
                while node is not None:
                    back.append(node)
                    node = seen[node]
                return list(reversed(back)) + [start]
            if w in scc and w not in seen:
                seen[w] = v
                queue.append(w)
    return path


def transformed(raw, overrides):
    params = parameter_values(raw, overrides)
    template = copy.deepcopy(raw)
    expanded = expand_language_extensions(template, parameter_values={**PSEUDO, **params}, enabled=True)
    template = expanded.expanded_template if expanded.had_language_extensions else template
    ev = Evaluator(template, params)
    template["Resources"] = {
        rid: r
        for rid, r in template["Resources"].items()
        if "Condition" not in r or ev.condition(r["Condition"])
    }
    template = resolve_ifs(template, ev)
    template["Transform"] = "AWS::Serverless-2016-10-31"
    for r in template["Resources"].values():
        if r.get("Type") == "AWS::Serverless::Function":
            r.setdefault("Properties", {})["CodeUri"] = "s3://bucket/function.zip"
    out = transform(template, params, NoManagedPolicies())
    return out["Resources"]


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "template.yaml"
    with open(path, encoding="utf-8") as f:
        raw = yaml_parse(f.read())
    failed = False
    for combo in itertools.product(*VARIANTS.values()):
        overrides = {k: v for part in combo for k, v in part.items()}
        label = ", ".join(f"{k}={overrides[k]!r}" for k in VARIANTS)
        resources = transformed(raw, overrides)
        found = cycles(graph(resources))
        if not found:
            print(f"{path} ({label}): {len(resources)} resources after the transform, no cycle")
        for scc, path_ in found:
            failed = True
            print(f"{path} ({label}): circular dependency after the SAM transform:", file=sys.stderr)
            print("  " + " -> ".join(path_), file=sys.stderr)
            print(f"  ({len(scc)} resources in the cycle: {', '.join(scc)})", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
