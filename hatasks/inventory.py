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

Every problem in the file is a :class:`UsageError` whose one-line message starts
with ``FILE:LINE:``. Nothing here touches the network.
"""

import os
import re
import shlex

from .errors import UsageError

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
        self.defined = False     # has a [name] or [name:children] section


class Inventory:
    """A parsed inventory. Build it with :func:`load` (or :func:`parse`)."""

    def __init__(self, path, groups, host_order, host_vars, host_ports):
        self.path = path
        self.dir = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()
        self._groups = groups
        self._host_order = host_order
        self._host_vars = host_vars
        self._host_ports = host_ports
        self._build()

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
            if port is None and merged.get("ansible_port"):
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


def load(path):
    """Read and parse the inventory at ``path``; UsageError if unreadable or malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"{path}: cannot read inventory: {reason}") from None
    return parse(text, path)


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


def parse(text, path="<inventory>"):
    """Parse inventory ``text``; ``path`` names it in messages and anchors relative paths."""
    groups = {"all": _Group("all"), "ungrouped": _Group("ungrouped")}
    groups["all"].defined = groups["ungrouped"].defined = True
    host_order = []
    host_vars = {}       # host -> {key: value}
    host_var_lines = {}  # host -> {key: line}
    host_ports = {}      # host -> (port)
    host_port_lines = {}
    child_refs = []      # (parent, child, line)
    section, kind = "ungrouped", "hosts"

    def group(name):
        if name not in groups:
            groups[name] = _Group(name)
        return groups[name]

    for lineno, raw in enumerate(text.splitlines(), 1):
        where = f"{path}:{lineno}"
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise UsageError(f"{where}: bad section header {line!r} (no closing ']')")
            head = line[1:-1].strip()
            name, _, kind = head.partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise UsageError(
                    f"{where}: unknown section kind {kind!r} in [{head}] (use :vars or :children)"
                )
            if not _NAME.match(name):
                raise UsageError(f"{where}: bad group name {name!r}")
            if name == "all" and kind != "vars":
                raise UsageError(f"{where}: group 'all' may only have a [all:vars] section")
            section = name
            g = group(name)
            if kind != "vars":
                g.defined = True
            continue

        if kind == "vars":
            key, eq, value = line.partition("=")
            key = key.strip()
            if not eq or not _KEY.match(key):
                raise UsageError(f"{where}: expected key=value in [{section}:vars], got {line!r}")
            value = _unquote(value, where)
            g = groups[section]
            if key in g.vars and g.vars[key] != value:
                raise UsageError(
                    f"{where}: {key} of group {section} set again with another value"
                    f" (first at line {g.var_lines[key]})"
                )
            g.vars[key] = value
            g.var_lines[key] = lineno
            continue

        if kind == "children":
            if not _NAME.match(line):
                raise UsageError(f"{where}: bad child group name {line!r}")
            if line == section:
                raise UsageError(f"{where}: group {section} cannot be its own child")
            groups[section].children.append((line, lineno))
            child_refs.append((section, line, lineno))
            continue

        # a host line: NAME[:PORT] [key=value ...]
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise UsageError(f"{where}: cannot split host line: {exc}") from None
        if not tokens:
            continue
        spec, pairs = tokens[0], tokens[1:]
        name, colon, port_text = spec.partition(":")
        if "[" in name or "]" in name:
            raise UsageError(f"{where}: host ranges are not supported ({spec!r})")
        if not _NAME.match(name):
            raise UsageError(f"{where}: bad host name {name!r}")
        port = None
        if colon:
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise UsageError(f"{where}: bad port {port_text!r} for host {name}")
            port = int(port_text)
        if name not in host_vars:
            host_order.append(name)
            host_vars[name] = {}
            host_var_lines[name] = {}
        if port is not None:
            if name in host_ports and host_ports[name] != port:
                raise UsageError(
                    f"{where}: host {name} given port {port} but port {host_ports[name]}"
                    f" at line {host_port_lines[name]}"
                )
            host_ports[name] = port
            host_port_lines[name] = lineno
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq or not _KEY.match(key):
                raise UsageError(f"{where}: bad host var {pair!r} for {name} (expected key=value)")
            if key in host_vars[name] and host_vars[name][key] != value:
                raise UsageError(
                    f"{where}: {key} of host {name} set again with another value"
                    f" (first at line {host_var_lines[name][key]})"
                )
            host_vars[name][key] = value
            host_var_lines[name][key] = lineno
        if key_port := host_vars[name].get("ansible_port"):
            if not key_port.isdigit() or not 1 <= int(key_port) <= 65535:
                raise UsageError(f"{where}: bad ansible_port {key_port!r} for host {name}")
        g = groups[section]
        if name not in g.hosts:
            g.hosts.append(name)

    for parent, child, lineno in child_refs:
        if child not in groups or not groups[child].defined:
            raise UsageError(
                f"{path}:{lineno}: child group {child!r} of {parent} is not defined"
            )
    # cycles in children
    state = {}

    def visit(name, lineno):
        state[name] = "active"
        for child, cl in groups[name].children:
            if state.get(child) == "active":
                raise UsageError(f"{path}:{cl}: group {child} is its own ancestor (cycle)")
            if child not in state:
                visit(child, cl)
        state[name] = "done"

    for name in list(groups):
        if name not in state:
            visit(name, 0)

    # hosts listed only before any section stay in "ungrouped"; a host also listed in a
    # real group leaves it (as Ansible does)
    grouped = {h for n, g in groups.items() if n != "ungrouped" for h in g.hosts}
    groups["ungrouped"].hosts = [h for h in groups["ungrouped"].hosts if h not in grouped]
    return Inventory(path, groups, host_order, host_vars, host_ports)
