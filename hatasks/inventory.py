"""The inventory: an Ansible-style INI file -> clusters, hosts and their vars.

Supported (the part of Ansible's INI format a runbook inventory needs)::

    # comment            ; comment too
    lonely01                         # before any section: group "ungrouped"
    [db]
    db01 ansible_host=10.0.0.11 pgpool_node_id=0
    db02:2222 note="two words"       # host:port = ssh port
    [db:vars]
    cluster_kind=db
    stack_start=systemctl start corosync pacemaker   # the rest of the line is the value
    [sites:children]
    db
    [all:vars]
    ssh_config=lab/ssh_config

Var precedence, lowest first: ``[all:vars]`` < group vars < inline host vars. Among the
groups holding a host, as in Ansible, a child group wins over its parents (groups are
applied by depth below ``all``, then in file order, so a later one of the same depth wins).
Values are strings (no type guessing); a value written in quotes is unquoted. A group
that sets ``cluster_kind`` in its own ``[g:vars]`` is a *cluster* (``db``, ``lb``, ...;
a site may have several of one kind).

The inventory is checked as a whole when it is loaded, and every problem is reported at
once, each as ``FILE:LINE: what is wrong``, in one :class:`UsageError` (exit 2) whose
one-line message starts with the first problem. Always checked: the syntax, ports (numbers
in 1-65535), paths on the hosts that must be absolute, ``pgpool_node_id`` (a whole number,
unique within a cluster), a host in two clusters, an empty inventory. Checked too while
:func:`checking` is on (the command line turns it on while tasks run): an unknown
``cluster_kind``, the vars a cluster of its kind needs (:data:`REQUIRED`), a cluster
without hosts, no cluster at all, two hosts at one address. Library users (scripts, unit
tests building minimal inventories) get the first set unless they ask with ``strict=True``.
:func:`read` returns the inventory with its ``problems`` without raising (``inv
inventory.check``). Nothing here touches the network.
"""

import contextlib
import os
import re
import shlex
import threading

from hatasks.errors import UsageError

#: the cluster kinds hatasks knows
KINDS = ("db", "lb")

#: vars a cluster of each kind needs: read from the cluster's vars ("cluster") or from each
#: host's merged vars ("host"); the others have defaults (pg_port 5432, pgpool_port 9999,
#: pcp_port 9898, pgpool_conf, pg_user postgres) or are reported when a task needs them
#: (stack_start, stack_stop, power_check, ha_log)
REQUIRED = {
    "db": {"cluster": ("vip", "group", "vip_resource", "pgpool_resource"),
           "host": ("pgdata", "pg_bindir", "pgpool_node_id")},
    "lb": {"cluster": ("vip", "group", "vip_resource", "apache_resource"),
           "host": ()},
}

#: vars naming a path on the hosts: relative would depend on the remote login's cwd
REMOTE_PATHS = ("pgdata", "pg_bindir", "pgpool_conf", "apache_conf", "ha_log", "pg_ctl_log")

_checking = 0
_checking_lock = threading.Lock()


@contextlib.contextmanager
def checking():
    """While inside, :func:`load` and :func:`parse` apply every check (strict=True)."""
    global _checking
    with _checking_lock:
        _checking += 1
    try:
        yield
    finally:
        with _checking_lock:
            _checking -= 1


def _is_port(value):
    text = str(value)
    return text.isdigit() and 1 <= int(text) <= 65535


def _is_port_var(key):
    return key == "ansible_port" or key.endswith("_port")


class Problem:
    """One thing wrong with an inventory: ``line`` (or None for the whole file), ``message``,
    and ``strict`` (only reported by a strict load)."""

    def __init__(self, path, line, message, strict=False):
        self.path = path
        self.line = line
        self.message = message
        self.strict = strict

    def __str__(self):
        where = f"{self.path}:{self.line}" if self.line else f"{self.path}"
        return f"{where}: {self.message}"

    def __repr__(self):
        return f"Problem({str(self)!r}, strict={self.strict})"


def problems_message(problems):
    """One line naming every problem (the first one first, as ``FILE:LINE: ...``)."""
    text = "; ".join(str(p) for p in problems)
    if len(problems) > 1:
        text += f" ({len(problems)} problems; inv inventory.check lists them)"
    return text

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


class Host:
    """One inventory host.

    ``name`` is the inventory name (and the ssh alias); ``address`` is ``ansible_host``
    or the name; ``port`` is the ssh port (``host:port`` or ``ansible_port``), or None
    for the default; ``vars`` are the merged vars; ``cluster`` is the name of the
    cluster group holding it (or None); ``groups`` all groups holding it.
    """

    def __init__(self, name, vars, groups, cluster, clusters, port):
        self.name = name
        self.vars = vars
        self.groups = groups
        self.cluster = cluster
        self.clusters = clusters
        self.port = port
        self.address = vars.get("ansible_host") or name

    @property
    def user(self):
        """The ssh login named by ``ansible_user``, or None."""
        return self.vars.get("ansible_user") or None

    @property
    def pgpool_node_id(self):
        value = self.vars.get("pgpool_node_id")
        return int(value) if value is not None and str(value).isdigit() else None

    def get(self, key, default=None):
        return self.vars.get(key, default)

    def __repr__(self):
        return f"Host({self.name!r}, address={self.address!r}, cluster={self.cluster!r})"


class Cluster:
    """A group that declares ``cluster_kind``: ``name``, ``kind``, ``vars`` (group vars
    merged with parents and all:vars), ``hosts`` (Host objects, file order)."""

    def __init__(self, name, kind, vars, hosts):
        self.name = name
        self.kind = kind
        self.vars = vars
        self.hosts = hosts

    @property
    def host_names(self):
        return [h.name for h in self.hosts]

    def host(self, name):
        for h in self.hosts:
            if h.name == name:
                return h
        raise UsageError(
            f"host {name!r} is not in cluster {self.name} (its hosts: {', '.join(self.host_names)})"
        )

    def get(self, key, default=None):
        return self.vars.get(key, default)

    def __repr__(self):
        return f"Cluster({self.name!r}, kind={self.kind!r}, hosts={self.host_names!r})"


class _Group:
    def __init__(self, name):
        self.name = name
        self.hosts = []          # direct host names, file order
        self.children = []       # (child name, line)
        self.vars = {}           # key -> value
        self.var_lines = {}      # key -> line
        self.host_lines = {}     # host -> line where it is listed in this group
        self.line = None         # first line of one of its sections
        self.defined = False     # has a [name] or [name:children] section


class Inventory:
    """A parsed inventory. Build it with :func:`load` (or :func:`parse`)."""

    def __init__(self, path, groups, host_order, host_vars, host_ports,
                 host_var_lines=None, host_lines=None, problems=()):
        self.path = path
        self.dir = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()
        self._groups = groups
        self._host_order = host_order
        self._host_vars = host_vars
        self._host_ports = host_ports
        self._host_var_lines = host_var_lines or {}
        self._host_lines = host_lines or {}
        self._build()
        #: every problem found (syntax first, then the checks of the whole), see Problem
        self.problems = sorted(list(problems) + self._check(bool(problems)),
                               key=lambda p: (p.line is None, p.line or 0))

    # ---- construction -------------------------------------------------------
    def _depth(self, name):
        """Longest chain of parent groups above ``name`` (Ansible's group depth)."""
        if name in self._depths:
            return self._depths[name]
        parents = [p for p, g in self._groups.items() if any(c == name for c, _ in g.children)]
        d = 1 + max((self._depth(p) for p in parents), default=0)
        self._depths[name] = d
        return d

    def _descendant_hosts(self, name, seen=None):
        seen = seen if seen is not None else set()
        if name in seen:
            return []
        seen.add(name)
        g = self._groups[name]
        out = list(g.hosts)
        for child, _ in g.children:
            out.extend(self._descendant_hosts(child, seen))
        return out

    def _ancestors(self, name):
        out = set()
        for p, g in self._groups.items():
            if any(c == name for c, _ in g.children):
                out.add(p)
                out |= self._ancestors(p)
        return out

    def _merge(self, group_names):
        """all:vars, then the groups by (depth, file order): deeper/later wins."""
        order = {name: i for i, name in enumerate(self._groups)}
        merged = dict(self._groups["all"].vars)
        for g in sorted(group_names, key=lambda n: (self._depth(n), order[n])):
            if g != "all":
                merged.update(self._groups[g].vars)
        return merged

    def _build(self):
        self._depths = {"all": 0}
        membership = {h: set() for h in self._host_order}
        for gname in self._groups:
            if gname != "all":
                for h in self._descendant_hosts(gname):
                    membership[h].add(gname)
        cluster_groups = [
            n for n, g in self._groups.items() if n != "all" and "cluster_kind" in g.vars
        ]
        self.hosts = {}
        for hname in self._host_order:
            groups = [g for g in self._groups if g in membership[hname]]
            merged = self._merge(groups)
            merged.update(self._host_vars[hname])
            clusters = [c for c in cluster_groups if c in membership[hname]]
            port = self._host_ports.get(hname)
            if port is None and _is_port(merged.get("ansible_port") or ""):
                port = int(merged["ansible_port"])
            self.hosts[hname] = Host(
                hname, merged, groups, clusters[0] if clusters else None, clusters, port
            )
        self.clusters = {}
        for c in cluster_groups:
            v = self._merge(self._ancestors(c) | {c})
            members = []
            for h in self._descendant_hosts(c):
                if self.hosts[h] not in members:
                    members.append(self.hosts[h])
            self.clusters[c] = Cluster(c, v["cluster_kind"], v, members)

    # ---- the checks of the whole ----------------------------------------------
    def _host_line(self, host, within=None):
        """The line listing ``host`` (in group ``within`` or one of its descendants)."""
        if within is None:
            return self._host_lines.get(host)
        seen, todo = set(), [within]
        while todo:
            name = todo.pop(0)
            if name in seen or name not in self._groups:
                continue
            seen.add(name)
            g = self._groups[name]
            if host in g.host_lines:
                return g.host_lines[host]
            todo.extend(c for c, _ in g.children)
        return self._host_lines.get(host)

    def _definitions(self):
        """Every var as written: (key, value, line, owner text, host name or None)."""
        for gname, g in self._groups.items():
            for key, value in g.vars.items():
                yield key, value, g.var_lines.get(key), f"in [{gname}:vars]", None
        for hname in self._host_order:
            lines = self._host_var_lines.get(hname, {})
            for key, value in self._host_vars[hname].items():
                yield key, value, lines.get(key), f"for host {hname}", hname

    def _check(self, unparsed=False):
        """Problems of the whole; ``unparsed``: some lines could not be parsed (then an
        inventory without hosts is their consequence, not one more problem)."""
        out = []

        def add(line, message, strict=False):
            out.append(Problem(self.path, line, message, strict))

        if not self.hosts and not unparsed:
            add(None, "no hosts: the inventory is empty")
        for key, value, line, owner, hname in self._definitions():
            if _is_port_var(key) and not (key == "ansible_port" and hname):
                if not _is_port(value):
                    add(line, f"bad {key} {value!r} {owner} (a port: 1-65535)")
            elif key in REMOTE_PATHS and not str(value).startswith("/"):
                add(line, f"{key} {value!r} {owner} must be an absolute path (a path on the hosts)")
            elif key == "pgpool_node_id" and not str(value).isdigit():
                add(line, f"bad pgpool_node_id {value!r} {owner} (a whole number: 0, 1, ...)")
        for h in self.hosts.values():
            if len(h.clusters) > 1:
                where = " and ".join(f"{c} (line {self._host_line(h.name, c)})" for c in h.clusters)
                add(self._host_line(h.name, h.clusters[1]),
                    f"host {h.name} is in {len(h.clusters)} clusters: {where}; a host belongs to one")
        for c in self.clusters.values():
            kind_line = self._groups[c.name].var_lines.get("cluster_kind")
            ids = {}
            for h in c.hosts:
                nid = h.vars.get("pgpool_node_id")
                if nid is None or not str(nid).isdigit():
                    continue
                if int(nid) in ids:
                    first = ids[int(nid)]
                    add(self._host_line(h.name, c.name),
                        f"pgpool_node_id {nid} of host {h.name} is also that of {first}"
                        f" (line {self._host_line(first, c.name)}) in cluster {c.name}")
                else:
                    ids[int(nid)] = h.name
            if c.kind not in KINDS:
                add(kind_line, f"unknown cluster_kind {c.kind!r} of group {c.name}"
                               f" (known: {', '.join(KINDS)})", strict=True)
                continue
            if not c.hosts:
                add(kind_line, f"cluster {c.name} has no hosts", strict=True)
            missing = [k for k in REQUIRED[c.kind]["cluster"] if not c.vars.get(k)]
            if missing:
                add(kind_line, f"cluster {c.name} (cluster_kind={c.kind}) lacks"
                               f" {', '.join(missing)} (required for a {c.kind} cluster)",
                    strict=True)
            for h in c.hosts:
                lack = [k for k in REQUIRED[c.kind]["host"] if not h.vars.get(k)]
                if lack:
                    add(self._host_line(h.name, c.name),
                        f"host {h.name} of {c.kind} cluster {c.name} lacks {', '.join(lack)}",
                        strict=True)
        for key, value, line, owner, hname in self._definitions():
            # files on this admin host that every ssh connection reads: a missing one is a
            # set-up problem (exit 2), not a host that does not answer
            if key in ("ssh_config", "known_hosts") and value:
                path = self.resolve_path(value)
                if not os.path.isfile(path):
                    add(line, f"{key} {value!r} {owner}: no such file on this admin host ({path};"
                              f" for the lab, inv lab.up writes it)", strict=True)
        if self.hosts and not self.clusters:
            add(None, f"no cluster: no group sets cluster_kind ({' or '.join(KINDS)})",
                strict=True)
        seen = {}
        for h in self.hosts.values():
            addr = (h.address, h.port or 22)
            if addr in seen:
                add(self._host_line(h.name), f"host {h.name} has the same address"
                    f" {addr[0]}:{addr[1]} as {seen[addr]} (line {self._host_line(seen[addr])})",
                    strict=True)
            else:
                seen[addr] = h.name
        return out

    # ---- queries ------------------------------------------------------------
    @property
    def host_names(self):
        return list(self.hosts)

    def host(self, name, cluster=None):
        """The Host called ``name`` (in ``cluster`` if given); UsageError if unknown."""
        h = self.hosts.get(str(name))
        if h is None:
            known = ", ".join(self.hosts) or "none"
            raise UsageError(f"unknown host {name!r} in {self.path} (known hosts: {known})")
        if cluster is not None:
            return self.cluster(cluster).host(h.name)
        return h

    def cluster(self, name):
        """The Cluster called ``name``; a kind (``db``) is accepted when exactly one
        cluster has it. UsageError listing the clusters otherwise."""
        c = self.clusters.get(str(name))
        if c is not None:
            return c
        of_kind = [c for c in self.clusters.values() if c.kind == name]
        if len(of_kind) == 1:
            return of_kind[0]
        known = ", ".join(f"{c.name} ({c.kind})" for c in self.clusters.values()) or "none"
        if of_kind:
            raise UsageError(
                f"several clusters of kind {name!r} in {self.path}: name one of {known}"
            )
        raise UsageError(f"unknown cluster {name!r} in {self.path} (clusters: {known})")

    def clusters_of_kind(self, kind):
        return [c for c in self.clusters.values() if c.kind == kind]

    def cluster_of(self, host_name):
        """The Cluster holding ``host_name``; UsageError if it is in none."""
        h = self.host(host_name)
        if h.cluster is None:
            raise UsageError(f"host {h.name} is in no cluster (no group with cluster_kind)")
        return self.clusters[h.cluster]

    def group(self, name):
        """Host objects of any group (transitively), file order."""
        if name not in self._groups:
            raise UsageError(
                f"unknown group {name!r} in {self.path} (groups: {', '.join(self._groups)})"
            )
        if name == "all":
            return list(self.hosts.values())
        out = []
        for h in self._descendant_hosts(name):
            if self.hosts[h] not in out:
                out.append(self.hosts[h])
        return out

    def pgpool_node(self, cluster, name_or_id):
        """The Host of ``cluster`` named ``name_or_id`` or whose ``pgpool_node_id`` is it."""
        c = self.cluster(cluster)
        value = str(name_or_id)
        for h in c.hosts:
            if h.name == value:
                return h
        for h in c.hosts:
            if h.vars.get("pgpool_node_id") is not None and str(h.vars["pgpool_node_id"]) == value:
                return h
        known = ", ".join(
            h.name + (f" (id {h.vars['pgpool_node_id']})" if "pgpool_node_id" in h.vars else "")
            for h in c.hosts
        )
        raise UsageError(f"no pgpool node {value!r} in cluster {c.name} (nodes: {known})")

    def resolve_path(self, value):
        """``value`` with ``~`` expanded; relative paths are taken from the inventory's folder."""
        if value is None:
            return None
        p = os.path.expanduser(str(value))
        if not os.path.isabs(p):
            p = os.path.join(self.dir, p)
        return os.path.normpath(p)

    def __repr__(self):
        return f"Inventory({self.path!r}, clusters={list(self.clusters)!r})"


def _read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"{path}: cannot read inventory: {reason}") from None


def read(path):
    """The inventory at ``path`` with every problem in ``.problems``, raising only when the
    file cannot be read (for ``inv inventory.check``)."""
    return _parse(_read_text(path), path)


def load(path, strict=None):
    """Read and parse the inventory at ``path``; UsageError listing every problem.

    ``strict`` (default: on inside :func:`checking`) adds the checks of what each cluster
    kind needs (see the module docstring)."""
    return _refuse_problems(_parse(_read_text(path), path), strict)


def parse(text, path="<inventory>", strict=None):
    """Parse inventory ``text``; ``path`` names it in messages and anchors relative paths.
    UsageError listing every problem, as :func:`load`."""
    return _refuse_problems(_parse(text, path), strict)


def _refuse_problems(inv, strict):
    if strict is None:
        strict = _checking > 0
    problems = [p for p in inv.problems if strict or not p.strict]
    if problems:
        raise UsageError(problems_message(problems))
    return inv


def _unquote(value, where):
    value = value.strip()
    if value[:1] in ("'", '"'):
        try:
            parts = shlex.split(value)
        except ValueError as exc:
            raise UsageError(f"{where}: bad quoted value {value!r}: {exc}") from None
        if len(parts) != 1:
            raise UsageError(f"{where}: bad quoted value {value!r}")
        return parts[0]
    return value


class _Bad(Exception):
    """A problem on the line being parsed: recorded, and parsing goes on."""


def _parse(text, path):
    groups = {"all": _Group("all"), "ungrouped": _Group("ungrouped")}
    groups["all"].defined = groups["ungrouped"].defined = True
    host_order = []
    host_vars = {}       # host -> {key: value}
    host_var_lines = {}  # host -> {key: line}
    host_lines = {}      # host -> first line listing it
    host_ports = {}      # host -> (port)
    host_port_lines = {}
    child_refs = []      # (parent, child, line)
    problems = []
    section, kind = "ungrouped", "hosts"

    def group(name):
        if name not in groups:
            groups[name] = _Group(name)
        return groups[name]

    def bad(message):
        raise _Bad(message)

    for lineno, raw in enumerate(text.splitlines(), 1):
        where = f"{path}:{lineno}"
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        try:
            if line.startswith("["):
                # until a good header, the lines below belong nowhere
                section, kind = None, "skip"
                if not line.endswith("]"):
                    bad(f"bad section header {line!r} (no closing ']')")
                head = line[1:-1].strip()
                name, _, new_kind = head.partition(":")
                new_kind = new_kind or "hosts"
                if new_kind not in ("hosts", "vars", "children"):
                    bad(f"unknown section kind {new_kind!r} in [{head}] (use :vars or :children)")
                if not _NAME.match(name):
                    bad(f"bad group name {name!r}")
                if name == "all" and new_kind != "vars":
                    bad("group 'all' may only have a [all:vars] section")
                section, kind = name, new_kind
                g = group(name)
                if g.line is None:
                    g.line = lineno
                if kind != "vars":
                    g.defined = True
                continue
            if kind == "skip":
                continue
            if kind == "vars":
                _vars_line(groups[section], section, line, lineno, where, bad)
            elif kind == "children":
                if not _NAME.match(line):
                    bad(f"bad child group name {line!r}")
                if line == section:
                    bad(f"group {section} cannot be its own child")
                groups[section].children.append((line, lineno))
                child_refs.append((section, line, lineno))
            else:
                _host_line(groups[section], line, lineno, bad, host_order, host_vars,
                           host_var_lines, host_lines, host_ports, host_port_lines)
        except _Bad as exc:
            problems.append(Problem(path, lineno, str(exc)))
        except UsageError as exc:
            # _unquote names the place itself
            problems.append(Problem(path, lineno, exc.message.split(": ", 1)[-1]))

    for parent, child, lineno in child_refs:
        if child not in groups or not groups[child].defined:
            problems.append(Problem(path, lineno, f"child group {child!r} of {parent} is not defined"))
            groups[parent].children = [(c, ln) for c, ln in groups[parent].children
                                       if not (c == child and ln == lineno)]
    # cycles in children: reported, and the edge closing the cycle dropped so that the
    # rest can still be built and checked
    state = {}

    def visit(name):
        state[name] = "active"
        for child, cl in list(groups[name].children):
            if state.get(child) == "active":
                problems.append(Problem(path, cl, f"group {child} is its own ancestor (cycle)"))
                groups[name].children.remove((child, cl))
            elif child not in state:
                visit(child)
        state[name] = "done"

    for name in list(groups):
        if name not in state:
            visit(name)

    # hosts listed only before any section stay in "ungrouped"; a host also listed in a
    # real group leaves it (as Ansible does)
    grouped = {h for n, g in groups.items() if n != "ungrouped" for h in g.hosts}
    groups["ungrouped"].hosts = [h for h in groups["ungrouped"].hosts if h not in grouped]
    return Inventory(path, groups, host_order, host_vars, host_ports,
                     host_var_lines=host_var_lines, host_lines=host_lines, problems=problems)


def _vars_line(g, section, line, lineno, where, bad):
    key, eq, value = line.partition("=")
    key = key.strip()
    if not eq or not _KEY.match(key):
        bad(f"expected key=value in [{section}:vars], got {line!r}")
    value = _unquote(value, where)
    if key in g.vars and g.vars[key] != value:
        bad(f"{key} of group {section} set again with another value"
            f" (first at line {g.var_lines[key]})")
    g.vars[key] = value
    g.var_lines[key] = lineno


def _host_line(g, line, lineno, bad, host_order, host_vars, host_var_lines, host_lines,
               host_ports, host_port_lines):
    """A host line: NAME[:PORT] [key=value ...]"""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        bad(f"cannot split host line: {exc}")
    if not tokens:
        return
    spec, pairs = tokens[0], tokens[1:]
    name, colon, port_text = spec.partition(":")
    if "[" in name or "]" in name:
        bad(f"host ranges are not supported ({spec!r})")
    if not _NAME.match(name):
        bad(f"bad host name {name!r}")
    port = None
    if colon:
        if not _is_port(port_text):
            bad(f"bad port {port_text!r} for host {name}")
        port = int(port_text)
    if name not in host_vars:
        host_order.append(name)
        host_vars[name] = {}
        host_var_lines[name] = {}
        host_lines[name] = lineno
    if name not in g.hosts:
        g.hosts.append(name)
        g.host_lines[name] = lineno
    if port is not None:
        if name in host_ports and host_ports[name] != port:
            bad(f"host {name} given port {port} but port {host_ports[name]}"
                f" at line {host_port_lines[name]}")
        host_ports[name] = port
        host_port_lines[name] = lineno
    errors = []
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not _KEY.match(key):
            errors.append(f"bad host var {pair!r} for {name} (expected key=value)")
            continue
        if key in host_vars[name] and host_vars[name][key] != value:
            errors.append(f"{key} of host {name} set again with another value"
                          f" (first at line {host_var_lines[name][key]})")
            continue
        host_vars[name][key] = value
        host_var_lines[name][key] = lineno
    if key_port := host_vars[name].get("ansible_port"):
        if not _is_port(key_port) and host_var_lines[name].get("ansible_port") == lineno:
            errors.append(f"bad ansible_port {key_port!r} for host {name}")
    if errors:
        bad("; ".join(errors))
