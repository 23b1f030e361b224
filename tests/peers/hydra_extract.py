"""Extract the inputs (never the expected values) of Hydra's own parser and compose tests
into tests/fixtures/hydra_suite/cases.json, for tests/hydra_suite (defectkit vs hydra-core).

Usage: python tests/peers/hydra_extract.py HYDRA_CHECKOUT OUT_DIR

HYDRA_CHECKOUT is a checkout of facebookresearch/hydra at the tag named in ORIGIN (its files
are read with `ast`, nothing is imported or run). OUT_DIR receives cases.json and, under
conf/, a copy of every config directory a compose case names.

Each case says where it came from (file:line test[id]) and what it feeds:
- value:    an element of the override grammar (test_overrides_parser's rule inputs); run as
            `+x=<input>` on an empty primary config, once composed and once as a `-m` sweep;
- override: a whole override line, run as typed on an empty config and on one that has its key;
- compose:  a config dir, a primary config name (or null) and an override list;
- apply:    an input config (written to a temporary primary config) and an override list.
Inputs that are not literals in the test source, or whose test registers its own functions or
structured configs, are not extracted; `skipped` lists them with the reason.
"""
import ast
import json
import shutil
import sys
from pathlib import Path

TAG = "v1.3.5"

# test_overrides_parser: test function -> the grammar rule its input is parsed with.
VALUE_RULES = {
    "test_element": "element",
    "test_value": "value",
    "test_list_container": "listContainer",
    "test_shuffle_sequence": "function",
    "test_dict_container": "dictContainer",
    "test_choice_sweep": "function",
    "test_simple_choice_sweep": "simpleChoiceSweep",
    "test_range_sweep": "function",
    "test_interval_sweep": "function",
    "test_package": "package",
    "test_package_or_group": "packageOrGroup",
    "test_key": "key",
    "test_primitive": "primitive",
    "test_primitive_quoted_string": "primitive",
    "test_tag_sweep": "function",
    "test_sort": "function",
    "test_sweep_shuffle": "function",
    "test_glob": "function",
}
OVERRIDE_TESTS = {
    "test_override_del",
    "test_get_key_element",
    "test_override_get_value_element_method",
    "test_override_value_method",
    "test_whitespaces",
    "test_sweep_iterators",
}
NOT_EXTRACTED = {
    "test_eval": "registers its own Python functions",
    "test_eval_errors": "registers its own Python functions",
    "test_function": "registers its own Python functions",
    "test_glob_filter": "tests Glob.filter on a Python list, not a parsed input",
    "test_escape_special_characters": "tests a Python helper, not a parsed input",
}
# Names the parser tests use inside their inputs.
CONSTANTS = {"UNQUOTED_SPECIAL": r"/-\+.$%*@?|"}


def literal(node):
    """The value of a literal node, or raise ValueError."""
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if isinstance(node, ast.Name) and node.id == "None":
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return literal(node.left) + literal(node.right)
    return ast.literal_eval(node)


def argnames(node):
    v = literal(node)
    if isinstance(v, str):
        return [s.strip() for s in v.split(",")]
    return list(v)


def param_rows(values_node):
    """(args, id, line) for each row of a parametrize list."""
    rows = []
    if not isinstance(values_node, (ast.List, ast.Tuple)):
        return rows
    for elt in values_node.elts:
        if isinstance(elt, ast.Call) and getattr(elt.func, "id", None) == "param":
            pid = None
            for kw in elt.keywords:
                if kw.arg == "id":
                    try:
                        pid = literal(kw.value)
                    except ValueError:
                        pid = None
            rows.append((elt.args, pid, elt.lineno))
        elif isinstance(elt, ast.Tuple):
            rows.append((elt.elts, None, elt.lineno))
        else:
            rows.append(([elt], None, elt.lineno))
    return rows


def parametrizations(func):
    """Every parametrize decorator of `func` as (names, rows)."""
    out = []
    for dec in func.decorator_list:
        if (
            isinstance(dec, ast.Call)
            and isinstance(dec.func, ast.Attribute)
            and dec.func.attr == "parametrize"
        ):
            try:
                names = argnames(dec.args[0])
            except ValueError:
                continue
            out.append((names, param_rows(dec.args[1])))
    return out


def functions(tree):
    """Top-level test functions and methods of test classes, with the class's decorators."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            yield node, []
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name.startswith("test_"):
                    yield item, node.decorator_list


class Extractor:
    def __init__(self, root):
        self.root = root
        self.cases = []
        self.skipped = []
        self.conf_dirs = set()

    def origin(self, file, line, func, pid):
        tag = f"[{pid}]" if pid else ""
        return f"tests/{file}:{line} {func}{tag}"

    def add(self, **case):
        self.cases.append(case)

    def skip(self, origin, why):
        self.skipped.append({"origin": origin, "why": why})

    # test_overrides_parser.py ---------------------------------------------------------
    def parser_tests(self):
        file = "test_overrides_parser.py"
        tree = ast.parse((self.root / "tests" / file).read_text())
        for func, _ in functions(tree):
            name = func.name
            params = parametrizations(func)
            if name in NOT_EXTRACTED:
                for _, rows in params:
                    for _, pid, line in rows:
                        self.skip(self.origin(file, line, name, pid), NOT_EXTRACTED[name])
                continue
            if name == "test_override":
                prefixes = next(r for n, r in params if n[0] == "prefix")
                values = next(r for n, r in params if n[0] == "value")
                for pargs, _, _ in prefixes:
                    for vargs, pid, line in values:
                        text = literal(pargs[0]) + literal(vargs[0])
                        self.add(
                            kind="override",
                            origin=self.origin(file, line, name, pid),
                            input=text,
                        )
                continue
            if name == "test_cast_conversions":
                (_, rows), = params
                for args, pid, line in rows:
                    try:
                        v = literal(args[0])
                    except ValueError:
                        self.skip(self.origin(file, line, name, pid), "not a literal")
                        continue
                    for cast in ("int", "float", "bool", "str"):
                        self.add(
                            kind="value",
                            rule="function",
                            origin=self.origin(file, line, name, pid) + f" {cast}",
                            input=f"{cast}({v})",
                        )
                continue
            if name == "test_float_range":
                (_, rows), = params
                for args, pid, line in rows:
                    start, stop, step = (literal(a) for a in args[:3])
                    self.add(
                        kind="value",
                        rule="function",
                        origin=self.origin(file, line, name, pid),
                        input=f"range({start},{stop},{step})",
                    )
                continue
            rule = VALUE_RULES.get(name)
            for names, rows in params:
                for args, pid, line in rows:
                    origin = self.origin(file, line, name, pid)
                    try:
                        if name == "test_parse_errors":
                            rule_here, text = literal(args[0]), literal(args[1])
                        else:
                            text, rule_here = literal(args[names.index(names[0])]), rule
                    except (ValueError, IndexError):
                        self.skip(origin, "not a literal")
                        continue
                    if not isinstance(text, str):
                        self.skip(origin, "not a string input")
                        continue
                    if name in OVERRIDE_TESTS or rule_here == "override":
                        self.add(kind="override", origin=origin, input=text)
                    elif rule_here in ("key", "package", "packageOrGroup"):
                        self.add(kind="key", rule=rule_here, origin=origin, input=text)
                    elif rule_here is not None:
                        self.add(kind="value", rule=rule_here, origin=origin, input=text)
                    else:
                        self.skip(origin, f"{name} is not a parser-rule test")

    # test_compose.py and test_config_loader.py ----------------------------------------
    def compose_tests(self, file, default_dir):
        tree = ast.parse((self.root / "tests" / file).read_text())
        for func, class_decorators in functions(tree):
            name = func.name
            params = parametrizations(func)
            class_fake = ast.FunctionDef(
                name="", args=None, body=[], decorator_list=class_decorators
            )
            params += parametrizations(class_fake)
            conf_dir = self.config_dir_of(func, params, default_dir)
            flat = {}
            for names, rows in params:
                for n in names:
                    flat.setdefault(n, (names, rows))
            if "input_cfg" in flat and "overrides" in flat:
                names, rows = flat["input_cfg"]
                for args, pid, line in rows:
                    origin = self.origin(file, line, name, pid)
                    try:
                        cfg = literal(args[names.index("input_cfg")])
                        ov = literal(args[names.index("overrides")])
                    except ValueError:
                        self.skip(origin, "not a literal")
                        continue
                    self.add(kind="apply", origin=origin, input_cfg=cfg, overrides=ov)
                continue
            name_key = next(
                (k for k in ("config_name", "config_file", "config") if k in flat), None
            )
            if "overrides" in flat and name_key is not None and conf_dir is not None:
                names, rows = flat["overrides"]
                if name_key not in names:
                    continue
                for args, pid, line in rows:
                    origin = self.origin(file, line, name, pid)
                    try:
                        ov = literal(args[names.index("overrides")])
                        cname = literal(args[names.index(name_key)])
                    except ValueError:
                        self.skip(origin, "not a literal")
                        continue
                    self.add_compose(origin, conf_dir, cname, ov)
                continue
            # Direct calls with literal arguments in the test body.
            for call in ast.walk(func):
                if not isinstance(call, ast.Call):
                    continue
                fname = getattr(call.func, "id", None) or getattr(call.func, "attr", None)
                if fname not in ("compose", "load_configuration"):
                    continue
                kwargs = {kw.arg: kw.value for kw in call.keywords}
                if call.args:
                    kwargs.setdefault("config_name", call.args[0])
                if len(call.args) > 1:
                    kwargs.setdefault("overrides", call.args[1])
                origin = self.origin(file, call.lineno, name, None)
                if conf_dir is None:
                    self.skip(origin, "its config dir is not a literal path")
                    continue
                ov_node = kwargs.get("overrides")
                if isinstance(ov_node, ast.Name) and ov_node.id in flat:
                    # compose(..., overrides=overrides) with the parametrized list.
                    names, rows = flat[ov_node.id]
                    for args, pid, line in rows:
                        row_origin = self.origin(file, line, name, pid)
                        try:
                            ov = literal(args[names.index(ov_node.id)])
                            cname = literal(kwargs["config_name"]) if "config_name" in kwargs else None
                        except ValueError:
                            self.skip(row_origin, "not a literal")
                            continue
                        self.add_compose(row_origin, conf_dir, cname, ov)
                    continue
                try:
                    ov = literal(ov_node) if ov_node is not None else []
                    cname = literal(kwargs["config_name"]) if "config_name" in kwargs else None
                except ValueError:
                    self.skip(origin, "not a literal")
                    continue
                self.add_compose(origin, conf_dir, cname, ov)

    def add_compose(self, origin, conf_dir, cname, overrides):
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            self.skip(origin, "overrides are not a list of strings")
            return
        if cname is not None and not isinstance(cname, str):
            self.skip(origin, "config name is not a string")
            return
        if cname is not None and cname.endswith((".yaml", ".yml")):
            cname = cname.rsplit(".", 1)[0]
        self.conf_dirs.add(conf_dir)
        self.add(
            kind="compose",
            origin=origin,
            config_dir=conf_dir,
            config_name=cname,
            overrides=overrides,
        )

    def config_dir_of(self, func, params, default_dir):
        """The repository-relative config dir a compose test reads, if it is a literal."""
        for names, rows in params:
            if "config_path" in names and rows:
                args = rows[0][0]
                path = literal(args[names.index("config_path")])
                return str(Path("tests", path)).replace("tests/../", "")
        for node in ast.walk(func):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in (
                "create_config_search_path",
            ):
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    return arg.value
                if isinstance(arg, ast.Name) and arg.id == "path":
                    # TestConfigLoader's `path` parameter: file:// or pkg:// of test_utils/configs.
                    return default_dir
                if isinstance(arg, ast.JoinedStr):
                    # f"{path}/package_tests" where path is the class's test_utils/configs.
                    tail = "".join(
                        v.value for v in arg.values if isinstance(v, ast.Constant)
                    )
                    return default_dir + tail
                return None
            if isinstance(node, ast.keyword) and node.arg == "config_path":
                if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                    return str(Path("tests", node.value.value)).replace("tests/../", "")
        return default_dir


def main():
    root = Path(sys.argv[1])
    out = Path(sys.argv[2])
    ex = Extractor(root)
    ex.parser_tests()
    ex.compose_tests("test_compose.py", None)
    ex.compose_tests("test_config_loader.py", "hydra/test_utils/configs")
    usable = []
    for d in sorted(ex.conf_dirs):
        src = root / d
        if src.is_dir():
            dst = out / "conf" / d
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
            usable.append(d)
    cases = []
    seen = set()
    for c in ex.cases:
        key = json.dumps({k: v for k, v in c.items() if k != "origin"}, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        if c["kind"] == "compose" and c["config_dir"] not in usable:
            ex.skip(c["origin"], f"config dir {c['config_dir']} is not in the checkout")
            continue
        cases.append(c)
    doc = {
        "source": f"facebookresearch/hydra {TAG}",
        "files": [
            "tests/test_overrides_parser.py",
            "tests/test_compose.py",
            "tests/test_config_loader.py",
        ],
        "cases": cases,
        "skipped": ex.skipped,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "cases.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    kinds = {}
    for c in cases:
        kinds[c["kind"]] = kinds.get(c["kind"], 0) + 1
    print(f"{len(cases)} cases {kinds}, {len(ex.skipped)} skipped, dirs {usable}")


if __name__ == "__main__":
    main()
