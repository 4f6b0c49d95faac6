"""The state store: one SQLite database (WAL) in the data directory.

Every daemon opens its own connection; transactions are short. Nothing here
spawns processes or touches the network. Writes that must not interleave
(allocating ports, numbering releases) use BEGIN IMMEDIATE.
"""
import functools
import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import NotFound
from .desired import Desired, InstanceSpec, InstanceState, SpecError
from .models import App, Generation, Instance, Key, Release, User

SCHEMA = """
CREATE TABLE IF NOT EXISTS users(
  name TEXT PRIMARY KEY, admin INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS keys(
  fingerprint TEXT PRIMARY KEY, user TEXT NOT NULL, keytype TEXT NOT NULL,
  key TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS apps(
  name TEXT PRIMARY KEY, owner TEXT NOT NULL, created REAL NOT NULL, generation INTEGER);
CREATE TABLE IF NOT EXISTS shares(app TEXT NOT NULL, user TEXT NOT NULL, PRIMARY KEY(app, user));
CREATE TABLE IF NOT EXISTS variables(
  app TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY(app, name));
CREATE TABLE IF NOT EXISTS scales(
  app TEXT NOT NULL, service TEXT NOT NULL, instances INTEGER NOT NULL, PRIMARY KEY(app, service));
CREATE TABLE IF NOT EXISTS domains(domain TEXT PRIMARY KEY, app TEXT NOT NULL, service TEXT NOT NULL,
  allow_http INTEGER NOT NULL DEFAULT 0, hsts INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS releases(
  id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, number INTEGER NOT NULL,
  revision TEXT NOT NULL, build INTEGER NOT NULL, user TEXT NOT NULL, created REAL NOT NULL,
  status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', description TEXT NOT NULL DEFAULT '',
  config TEXT NOT NULL DEFAULT '{}', UNIQUE(app, number));
CREATE TABLE IF NOT EXISTS generations(
  id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, release INTEGER NOT NULL,
  state TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS instances(
  id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, generation INTEGER NOT NULL,
  service TEXT NOT NULL, number INTEGER NOT NULL, port INTEGER NOT NULL,
  desired TEXT NOT NULL, state TEXT NOT NULL, pid INTEGER, restarts INTEGER NOT NULL DEFAULT 0,
  last_exit INTEGER, started REAL, updated REAL NOT NULL, spec TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS instances_live ON instances(state, desired);
CREATE TABLE IF NOT EXISTS audit(
  id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, user TEXT NOT NULL,
  app TEXT, action TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS app_users(app TEXT PRIMARY KEY, uid INTEGER NOT NULL UNIQUE);
"""


# Columns added since the table was first made: (table, column, definition).
MIGRATIONS = (
    ("domains", "allow_http", "INTEGER NOT NULL DEFAULT 0"),   # HTTPS: keep plain HTTP
    ("domains", "hsts", "INTEGER NOT NULL DEFAULT 0"),         # HTTPS: Strict-Transport-Security
)


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                  check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        # Keys, audit, variables: the platform's alone (SQLite gives -wal and -shm the same mode).
        os.chmod(self.path, 0o600)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=30000")
        self.db.executescript(SCHEMA)
        self._add_columns(MIGRATIONS)

    def close(self) -> None:
        self.db.close()

    def _add_columns(self, columns) -> None:
        """Bring a database made by an older version up to date, in place."""
        for table, column, definition in columns:
            have = {r["name"] for r in self._all(f"PRAGMA table_info({table})")}
            if column in have:
                continue
            try:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):
                    raise       # another daemon opening the store added it first: fine

    @contextmanager
    def tx(self, immediate: bool = True):
        self.db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    def _one(self, sql, args=()):
        return self.db.execute(sql, args).fetchone()

    def _all(self, sql, args=()):
        return self.db.execute(sql, args).fetchall()

    # users and keys
    def add_user(self, name: str, admin: bool = False) -> None:
        self.db.execute(
            "INSERT INTO users(name, admin, created) VALUES(?,?,?) "
            "ON CONFLICT(name) DO UPDATE SET admin = max(admin, excluded.admin)",
            (name, int(admin), time.time()))

    def user(self, name: str) -> User | None:
        row = self._one("SELECT * FROM users WHERE name=?", (name,))
        return User(row["name"], bool(row["admin"]), row["created"]) if row else None

    def users(self) -> list[User]:
        return [User(r["name"], bool(r["admin"]), r["created"])
                for r in self._all("SELECT * FROM users ORDER BY name")]

    def add_key(self, user: str, admin: bool, fingerprint: str, keytype: str, key: str) -> None:
        with self.tx():
            self.add_user(user, admin)
            self.db.execute(
                "INSERT OR REPLACE INTO keys(fingerprint, user, keytype, key, created) "
                "VALUES(?,?,?,?,?)", (fingerprint, user, keytype, key, time.time()))

    def keys(self, user: str | None = None) -> list[Key]:
        rows = (self._all("SELECT * FROM keys WHERE user=? ORDER BY created", (user,)) if user
                else self._all("SELECT * FROM keys ORDER BY user, created"))
        return [Key(r["fingerprint"], r["user"], r["keytype"], r["key"], r["created"]) for r in rows]

    def key_by_fingerprint(self, fingerprint: str) -> Key | None:
        r = self._one("SELECT * FROM keys WHERE fingerprint=?", (fingerprint,))
        return Key(r["fingerprint"], r["user"], r["keytype"], r["key"], r["created"]) if r else None

    def remove_user_keys(self, user: str) -> int:
        with self.tx():
            n = self.db.execute("DELETE FROM keys WHERE user=?", (user,)).rowcount
            self.db.execute("DELETE FROM users WHERE name=?", (user,))
            self.db.execute("DELETE FROM shares WHERE user=?", (user,))
        return n

    # apps
    def app(self, name: str) -> App | None:
        r = self._one("SELECT * FROM apps WHERE name=?", (name,))
        return App(r["name"], r["owner"], r["created"], r["generation"]) if r else None

    def apps(self) -> list[App]:
        return [App(r["name"], r["owner"], r["created"], r["generation"])
                for r in self._all("SELECT * FROM apps ORDER BY name")]

    def create_app(self, name: str, owner: str) -> bool:
        cur = self.db.execute("INSERT OR IGNORE INTO apps(name, owner, created) VALUES(?,?,?)",
                              (name, owner, time.time()))
        return cur.rowcount == 1

    def delete_app(self, name: str) -> None:
        with self.tx():
            for table, col in (("apps", "name"), ("shares", "app"), ("variables", "app"),
                               ("scales", "app"), ("domains", "app"), ("releases", "app"),
                               ("generations", "app"), ("app_users", "app")):
                self.db.execute(f"DELETE FROM {table} WHERE {col}=?", (name,))
            self.db.execute("UPDATE instances SET desired='stop' WHERE app=?", (name,))

    def shares(self, app: str) -> list[str]:
        return [r["user"] for r in self._all("SELECT user FROM shares WHERE app=? ORDER BY user", (app,))]

    def share(self, app: str, user: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO shares(app, user) VALUES(?,?)", (app, user))

    def unshare(self, app: str, user: str) -> None:
        self.db.execute("DELETE FROM shares WHERE app=? AND user=?", (app, user))

    def can_access(self, user: str, app: str) -> bool:
        u = self.user(user)
        if u is None:
            return False
        if u.admin:
            return True
        a = self.app(app)
        return a is not None and (a.owner == user or user in self.shares(app))

    # variables, scales, domains
    def variables(self, app: str) -> dict[str, str]:
        return {r["name"]: r["value"]
                for r in self._all("SELECT name, value FROM variables WHERE app=? ORDER BY name", (app,))}

    def set_variables(self, app: str, values: dict[str, str], unset: list[str] = ()) -> None:
        with self.tx():
            for k, v in values.items():
                self.db.execute("INSERT OR REPLACE INTO variables(app, name, value) VALUES(?,?,?)",
                                (app, k, v))
            for k in unset:
                self.db.execute("DELETE FROM variables WHERE app=? AND name=?", (app, k))

    def scales(self, app: str) -> dict[str, int]:
        return {r["service"]: r["instances"]
                for r in self._all("SELECT service, instances FROM scales WHERE app=?", (app,))}

    def set_scales(self, app: str, scales: dict[str, int]) -> None:
        with self.tx():
            for service, n in scales.items():
                self.db.execute("INSERT OR REPLACE INTO scales(app, service, instances) VALUES(?,?,?)",
                                (app, service, n))

    def unset_scales(self, app: str, services) -> None:
        """Back to the build file's instance count for these services."""
        with self.tx():
            for service in services:
                self.db.execute("DELETE FROM scales WHERE app=? AND service=?", (app, service))

    def domains(self, app: str | None = None) -> list[tuple[str, str, str]]:
        rows = (self._all("SELECT * FROM domains WHERE app=? ORDER BY domain", (app,)) if app
                else self._all("SELECT * FROM domains ORDER BY domain"))
        return [(r["domain"], r["app"], r["service"]) for r in rows]

    def add_domain(self, domain: str, app: str, service: str, allow_http: bool = False,
                   hsts: bool = False) -> bool:
        cur = self.db.execute("INSERT OR IGNORE INTO domains(domain, app, service, allow_http, "
                              "hsts) VALUES(?,?,?,?,?)",
                              (domain, app, service, int(allow_http), int(hsts)))
        return cur.rowcount == 1

    def domain_options(self, app: str | None = None) -> dict[str, dict]:
        """domain -> {allow_http, hsts} (how HTTPS treats it)."""
        rows = (self._all("SELECT * FROM domains WHERE app=?", (app,)) if app
                else self._all("SELECT * FROM domains"))
        return {r["domain"]: {"allow_http": bool(r["allow_http"]), "hsts": bool(r["hsts"])}
                for r in rows}

    def remove_domain(self, domain: str, app: str) -> bool:
        return self.db.execute("DELETE FROM domains WHERE domain=? AND app=?",
                               (domain, app)).rowcount == 1

    # releases
    def new_release(self, app: str, revision: str, user: str, description: str,
                    config: dict, build: int | None = None, status: str = "building") -> Release:
        with self.tx():
            n = self._one("SELECT coalesce(max(number), 0) + 1 AS n FROM releases WHERE app=?",
                          (app,))["n"]
            cur = self.db.execute(
                "INSERT INTO releases(app, number, revision, build, user, created, status, "
                "description, config) VALUES(?,?,?,?,?,?,?,?,?)",
                (app, n, revision, build or n, user, time.time(), status, description,
                 json.dumps(config, sort_keys=True)))
        return self.release_by_id(cur.lastrowid)

    def set_release_status(self, release_id: int, status: str, reason: str = "") -> None:
        self.db.execute("UPDATE releases SET status=?, reason=? WHERE id=?", (status, reason, release_id))

    def set_release_config(self, release_id: int, config: dict, status: str) -> None:
        self.db.execute("UPDATE releases SET config=?, status=? WHERE id=?",
                        (json.dumps(config, sort_keys=True), status, release_id))

    def release_by_id(self, rid: int) -> Release:
        r = self._one("SELECT * FROM releases WHERE id=?", (rid,))
        if r is None:
            raise NotFound(f"no release {rid}")
        return _release(r)

    def release(self, app: str, number: int) -> Release | None:
        r = self._one("SELECT * FROM releases WHERE app=? AND number=?", (app, number))
        return _release(r) if r else None

    def releases(self, app: str) -> list[Release]:
        return [_release(r) for r in self._all("SELECT * FROM releases WHERE app=? ORDER BY number", (app,))]

    def active_release(self, app: str) -> Release | None:
        r = self._one("SELECT r.* FROM releases r JOIN generations g ON g.release = r.id "
                      "JOIN apps a ON a.generation = g.id WHERE a.name=?", (app,))
        return _release(r) if r else None

    # generations
    def new_generation(self, app: str, release_id: int) -> Generation:
        cur = self.db.execute(
            "INSERT INTO generations(app, release, state, created) VALUES(?,?,?,?)",
            (app, release_id, "starting", time.time()))
        return self.generation(cur.lastrowid)

    def generation(self, gid: int) -> Generation | None:
        r = self._one("SELECT * FROM generations WHERE id=?", (gid,))
        return Generation(r["id"], r["app"], r["release"], r["state"], r["created"]) if r else None

    def generations(self, app: str, states: tuple[str, ...]) -> list[Generation]:
        marks = ",".join("?" * len(states))
        rows = self._all(f"SELECT * FROM generations WHERE app=? AND state IN ({marks}) ORDER BY id",
                         (app, *states))
        return [Generation(r["id"], r["app"], r["release"], r["state"], r["created"]) for r in rows]

    def set_generation_state(self, gid: int, state: str) -> None:
        self.db.execute("UPDATE generations SET state=? WHERE id=?", (state, gid))

    def activate(self, app: str, gid: int) -> int | None:
        """Make gid the app's active generation; return the previous one's id."""
        with self.tx():
            old = self._one("SELECT generation FROM apps WHERE name=?", (app,))["generation"]
            self.db.execute("UPDATE apps SET generation=? WHERE name=?", (gid, app))
            self.db.execute("UPDATE generations SET state='active' WHERE id=?", (gid,))
            if old is not None and old != gid:
                self.db.execute("UPDATE generations SET state='draining' WHERE id=?", (old,))
            rel = self._one("SELECT release FROM generations WHERE id=?", (gid,))["release"]
            self.db.execute("UPDATE releases SET status='retired' WHERE app=? AND status='active'", (app,))
            self.db.execute("UPDATE releases SET status='active' WHERE id=?", (rel,))
        return old if old != gid else None

    # instances
    def add_instance(self, app: str, gid: int, service: str, number: int, port: int,
                     spec: InstanceSpec | dict) -> Instance:
        """`spec` as a dict: a row as older versions wrote it (tests of old rows)."""
        text = spec.to_json() if isinstance(spec, InstanceSpec) else json.dumps(spec)
        cur = self.db.execute(
            "INSERT INTO instances(app, generation, service, number, port, desired, state, "
            "updated, spec) VALUES(?,?,?,?,?,?,?,?,?)",
            (app, gid, service, number, port, Desired.PENDING, InstanceState.NEW, time.time(),
             text))
        return self.instance(cur.lastrowid)

    def instance(self, iid: int) -> Instance | None:
        r = self._one("SELECT * FROM instances WHERE id=?", (iid,))
        return _instance(r) if r else None

    def instances(self, app: str | None = None, generation: int | None = None,
                  live_only: bool = False) -> list[Instance]:
        sql, args = "SELECT * FROM instances WHERE 1=1", []
        if app is not None:
            sql += " AND app=?"; args.append(app)
        if generation is not None:
            sql += " AND generation=?"; args.append(generation)
        if live_only:
            sql += " AND NOT (desired='stop' AND state='stopped')"
        return [_instance(r) for r in self._all(sql + " ORDER BY service, number, id", args)]

    def set_desired(self, iids: list[int], desired: str) -> None:
        with self.tx():
            for iid in iids:
                self.db.execute("UPDATE instances SET desired=?, updated=? WHERE id=?",
                                (desired, time.time(), iid))

    def move_instances(self, iids: list[int], gid: int) -> None:
        """Hand running instances to another generation (kept data services)."""
        with self.tx():
            for iid in iids:
                self.db.execute("UPDATE instances SET generation=?, updated=? WHERE id=?",
                                (gid, time.time(), iid))

    def observe(self, iid: int, **fields) -> None:
        """Record what the runtime observed (state, pid, restarts, last_exit, started)."""
        cols = ", ".join(f"{k}=?" for k in fields)
        self.db.execute(f"UPDATE instances SET {cols}, updated=? WHERE id=?",
                        (*fields.values(), time.time(), iid))

    def ports_in_use(self) -> set[int]:
        return {r["port"] for r in self._all(
            "SELECT port FROM instances WHERE NOT (desired='stop' AND state='stopped')")}

    # audit and counters
    def audit(self, user: str, action: str, app: str | None = None, detail: str = "") -> None:
        self.db.execute("INSERT INTO audit(ts, user, app, action, detail) VALUES(?,?,?,?,?)",
                        (time.time(), user, app, action, detail))

    def audit_log(self, app: str | None = None, limit: int = 100) -> list[sqlite3.Row]:
        if app:
            return self._all("SELECT * FROM audit WHERE app=? ORDER BY id DESC LIMIT ?", (app, limit))
        return self._all("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))

    def next_counter(self, key: str) -> int:
        with self.tx():
            r = self._one("SELECT value FROM meta WHERE key=?", (key,))
            n = int(r["value"]) + 1 if r else 1
            self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?,?)", (key, str(n)))
        return n


def _release(r) -> Release:
    return Release(r["id"], r["app"], r["number"], r["revision"], r["build"], r["user"],
                   r["created"], r["status"], r["reason"], r["description"], r["config"])


@functools.lru_cache(maxsize=4096)
def _spec(text: str, app: str, service: str, number: int, generation: int,
          port: int) -> InstanceSpec:
    # A row's spec never changes once written, and the runtime reads every
    # live row at each pass: parse each one once (a spec is immutable).
    return InstanceSpec.from_json(text, app=app, service=service, number=number,
                                  generation=generation, port=port)


def _instance(r) -> Instance:
    try:
        spec, error = _spec(r["spec"], r["app"], r["service"], r["number"], r["generation"],
                            r["port"]), None
    except SpecError as e:
        spec, error = None, str(e)     # the runtime reports it failing, one row alone
    return Instance(r["id"], r["app"], r["generation"], r["service"], r["number"], r["port"],
                    _known(Desired, r["desired"]), _known(InstanceState, r["state"]), r["pid"],
                    r["restarts"], r["last_exit"], r["started"], r["updated"], spec, error)


def _known(enum, text: str):
    """The enum member for the stored text; text no version of ours wrote stays text."""
    try:
        return enum(text)
    except ValueError:
        return text
