"""hatasks.parsers on real outputs: captures made on this machine (pgpool-II 4.3.5 `-n`,
Apache 2.4 `apache2ctl`, PostgreSQL 15 logs, pg_dumpall/vacuumdb `-v`), the lab samples and the
2008 manual's lines."""

import pathlib

import pytest

from hatasks import parsers

FIX = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
LAB = FIX / "lab-samples"
CAP = FIX / "captures"
RUNBOOK = FIX / "runbook"


def read(path):
    return path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- pgpool -n


def test_pgpool_check_2008_config_error():
    r = parsers.parse_pgpool_check(read(RUNBOOK / "pgpool_n_config_error.txt"))
    assert r["ok"] is False and r["started"] is False
    assert r["errors"] == [
        "2007-12-18 09:06:32 ERROR: pid 9043: pool_config: invalid value **** for log_statement",
        "2007-12-18 09:06:32 ERROR: pid 9043: Unable to get configuration. Exiting...",
    ]
    assert [m["message"] for m in r["messages"]] == [
        "pool_config: invalid value **** for log_statement",
        "Unable to get configuration. Exiting...",
    ]


def test_pgpool_check_2008_started():
    r = parsers.parse_pgpool_check(read(RUNBOOK / "pgpool_n_started.txt"))
    assert r["ok"] is True and r["started"] is True
    assert r["errors"] == [] and r["after_start"] == []
    assert r["messages"] == [{"level": "LOG", "message": "starting health checking",
                              "line": "2007-12-19 03:45:29 LOG: pid 3954: starting health "
                                      "checking", "after_start": True}]


def test_pgpool_check_43_started_then_stopped_by_sigint():
    r = parsers.parse_pgpool_check(read(CAP / "pgpool_n_started_sigint.txt"))
    assert r["ok"] is True and r["started"] is True
    assert r["errors"] == []


@pytest.mark.parametrize("name, error", [
    ("pgpool_n_invalid_port.txt",
     'FATAL:  invalid value for parameter "port": "abc"'),
    ("pgpool_n_invalid_clustering_mode.txt",
     'FATAL:  invalid value for parameter "backend_clustering_mode": "bogus" | '
     '2026-11-25 17:09:51.526: main pid 7340: HINT:  Available values: streaming_replication, '
     'native_replication, logical_replication, slony, raw, snapshot_isolation.'),
    ("pgpool_n_out_of_range.txt",
     'FATAL:  -5 is outside the valid range for parameter "num_init_children" '
     '(1 .. 2147483647)'),
    ("pgpool_n_address_in_use.txt",
     'FATAL:  failed to create INET domain socket | 2026-11-25 17:10:18.958: main pid 7523: '
     'DETAIL:  bind on socket failed with error "Address already in use"'),
])
def test_pgpool_check_43_fatal_config_errors(name, error):
    r = parsers.parse_pgpool_check(read(CAP / name))
    assert r["ok"] is False and r["started"] is False
    assert len(r["errors"]) == 1
    assert r["errors"][0].endswith(error)


def test_pgpool_check_pid_file_found():
    r = parsers.parse_pgpool_check(read(CAP / "pgpool_n_pid_file_found.txt"))
    assert r["ok"] is False
    assert r["errors"] == ["ERROR: pid file found. is another pgpool(7476) is running?"]


def test_pgpool_check_missing_config_is_not_ok_although_it_started():
    r = parsers.parse_pgpool_check(read(CAP / "pgpool_n_missing_config.txt"))
    assert r["started"] is True
    assert r["ok"] is False
    assert r["errors"][0].endswith('WARNING:  could not open configuration file: '
                                   '"/tmp/hatest-pgpool/missing.conf" | 2026-11-25 '
                                   '17:10:01.582: main pid 7421: DETAIL:  using default '
                                   'configuration parameter values')


def test_pgpool_check_43_accepts_what_34_refused():
    # the manual's failing example (a bad log_statement) starts fine on pgpool-II 4.3
    r = parsers.parse_pgpool_check(read(CAP / "pgpool_n_bad_log_statement_accepted.txt"))
    assert r["ok"] is True and r["started"] is True


def test_pgpool_check_errors_after_start_do_not_fail_the_check():
    out = read(RUNBOOK / "pgpool_n_started.txt") + \
        "2007-12-19 03:45:59 ERROR: pid 3954: health check failed. 1 th host DB02 at port 5432 " \
        "is down\n"
    r = parsers.parse_pgpool_check(out)
    assert r["ok"] is True
    assert r["after_start"] == ["2007-12-19 03:45:59 ERROR: pid 3954: health check failed. "
                                "1 th host DB02 at port 5432 is down"]


@pytest.mark.parametrize("out", ["", None, b"", "Segmentation fault\n"])
def test_pgpool_check_no_start_line(out):
    r = parsers.parse_pgpool_check(out)
    assert r["ok"] is False
    assert r["errors"] == ["pgpool did not print 'successfully started' (no error line either)"]


# --------------------------------------------------------------------------- apachectl


def test_apachectl_2008_syntax_error():
    r = parsers.parse_apachectl(read(RUNBOOK / "apachectl_syntax_error.txt"))
    assert r["ok"] is False
    assert r["line"] == 423
    assert r["file"] == "/opt/Openstandia/apache2.2/conf/httpd.conf"
    assert r["message"] == ("Invalid command 'hoge', perhaps misspelled or defined by a module "
                            "not included in the server configuration")
    assert len(r["errors"]) == 1


@pytest.mark.parametrize("name, line, file_, message", [
    ("apache2ctl_t_invalid_command.txt", 21, "/tmp/hatest-apache/apache2/apache2.conf",
     "Invalid command 'hoge', perhaps misspelled or defined by a module not included in the "
     "server configuration"),
    ("apache2ctl_start_invalid_command.txt", 21, "/tmp/hatest-apache/apache2/apache2.conf",
     "Invalid command 'hoge', perhaps misspelled or defined by a module not included in the "
     "server configuration"),
    ("apache2ctl_t_included_file_error.txt", 14, "/tmp/hatest-apache/apache2/ports.conf",
     "Listen requires 1 or 2 arguments."),
])
def test_apachectl_24_syntax_errors(name, line, file_, message):
    r = parsers.parse_apachectl(read(CAP / name))
    assert r["ok"] is False
    assert (r["line"], r["file"], r["message"]) == (line, file_, message)
    assert r["errors"] == ["AH00526: Syntax error on line %d of %s: %s" % (line, file_, message)]


def test_apachectl_missing_config_file():
    r = parsers.parse_apachectl(read(CAP / "apache2_t_missing_config.txt"))
    assert r["ok"] is False and r["line"] is None
    assert r["file"] == "/tmp/hatest-apache/apache2/nonexist.conf"
    assert r["message"] == "No such file or directory"


@pytest.mark.parametrize("path", [CAP / "apache2ctl_t_ok.txt", LAB / "apachectl-t.txt"])
def test_apachectl_syntax_ok_with_servername_warning(path):
    r = parsers.parse_apachectl(read(path))
    assert r["ok"] is True and r["syntax_ok"] is True
    assert r["errors"] == []
    assert r["warnings"] and r["warnings"][0].startswith("AH00558:")


def test_apachectl_start_prints_nothing_when_fine():
    assert parsers.parse_apachectl("", expect_syntax_ok=False)["ok"] is True
    r = parsers.parse_apachectl("")
    assert r["ok"] is False and r["errors"] == ["apachectl did not print 'Syntax OK'"]


# --------------------------------------------------------------------------- PostgreSQL log


def test_pg_log_errors_collector_prefix():
    errs = parsers.parse_pg_log_errors(read(CAP / "pg_log_collector.log"), limit=None)
    assert [(e["level"], e["pid"]) for e in errs][:6] == [
        ("ERROR", 7689), ("ERROR", 7692), ("ERROR", 7695), ("ERROR", 7698), ("FATAL", 7701),
        ("FATAL", 7704)]
    assert errs[0]["message"] == 'syntax error at or near "selec" at character 1'
    assert errs[0]["statement"] == "selec 1"
    assert errs[0]["time"] == "2026-11-25 17:10:37.642 UTC"
    assert errs[3]["detail"] == "Key (id)=(1) already exists."
    assert errs[4]["message"] == 'database "nosuchdb" does not exist'
    assert len(errs) == 9
    # a multi-line statement stays with its entry
    assert errs[-1]["statement"].startswith("WITH listed_tables")
    assert errs[-1]["statement"].endswith("ORDER BY c.relpages DESC;")


def test_pg_log_errors_limit_keeps_the_newest():
    errs = parsers.parse_pg_log_errors(read(CAP / "pg_log_collector.log"), limit=2)
    assert [e["message"] for e in errs] == [
        "permission denied for table secret",
        'relation "nosuchtable" does not exist at character 60']
    assert parsers.parse_pg_log_errors(read(CAP / "pg_log_collector.log"), limit=0) == []


def test_pg_log_errors_no_prefix_like_2008():
    errs = parsers.parse_pg_log_errors(read(CAP / "pg_log_no_prefix.log"))
    assert [(e["level"], e["message"]) for e in errs] == [
        ("ERROR", 'syntax error at or near "selec" at character 1'),
        ("ERROR", 'duplicate key value violates unique constraint "t1_pkey"'),
        ("FATAL", 'database "nosuchdb" does not exist'),
    ]
    assert all(e["pid"] is None and e["time"] is None for e in errs)
    assert "cause" not in errs[0]


@pytest.mark.parametrize("name, cause", [
    ("pg_startup_invalid_value.log", 'invalid value for parameter "shared_buffers": "lots"'),
    ("pg_startup_unrecognized_parameter.log",
     'unrecognized configuration parameter "no_such_setting" in file '
     '"/tmp/hatest-pg/data/postgresql.conf" line 823'),
])
def test_pg_log_startup_failure_names_the_bad_parameter(name, cause):
    [e] = parsers.parse_pg_log_errors(read(CAP / name))
    assert e["level"] == "FATAL"
    assert e["message"] == 'configuration file "/tmp/hatest-pg/data/postgresql.conf" ' \
                           'contains errors'
    assert e["cause"] == cause


def test_pg_log_lock_file_hint():
    [e] = parsers.parse_pg_log_errors(read(CAP / "pg_startup_lock_file_exists.log"))
    assert e["message"] == 'lock file "postmaster.pid" already exists'
    assert e["hint"] == 'Is another postmaster (PID 7651) running in data directory ' \
                        '"/tmp/hatest-pg/data"?'


def test_pg_log_panic_counts():
    log = "2026-11-25 17:00:00.000 UTC [42] PANIC:  could not write to file " \
          "\"pg_wal/xlogtemp.42\": No space left on device\n"
    [e] = parsers.parse_pg_log_errors(log)
    assert (e["level"], e["pid"]) == ("PANIC", 42)


def test_pg_log_without_errors():
    assert parsers.parse_pg_log_errors("LOG:  database system is ready to accept connections\n") \
        == []
    assert parsers.parse_pg_log_errors("") == []


# --------------------------------------------------------------------------- ha-log


def test_ha_log_pacemaker_errors():
    entries = parsers.parse_ha_log(read(LAB / "fault_partition_scheduler_log.txt"))
    assert [e["message"] for e in entries] == [
        "ocf resource db-vip might be active on 2 nodes (attempting recovery)",
        "ocf resource pgpool might be active on 2 nodes (attempting recovery)",
        "Calculated transition 23 (with errors), saving inputs in "
        "/var/lib/pacemaker/pengine/pe-error-0.bz2",
    ]
    assert {(e["level"], e["daemon"], e["pid"], e["host"]) for e in entries} == {
        ("error", "pacemaker-schedulerd", 89, "db01")}
    assert entries[0]["time"] == "Nov 25 16:49:57.974"


def test_ha_log_heartbeat_2008_layout():
    # the manual prints this real line (crm_standby, info level); Heartbeat's ERROR lines
    # share the layout
    info = read(RUNBOOK / "crm_mon_db01_standby.txt")  # no error lines at all
    line = "crm_standby[10113]: 2007/12/18_09:23:42 info: Invoked: crm_standby -U db01 -v false"
    error = "heartbeat[2959]: 2007/12/18_09:06:32 ERROR: Cannot open keyfile [/etc/ha.d/authkeys]"
    entries = parsers.parse_ha_log("\n".join([info, line, error]))
    assert entries == [{"level": "error", "message": "Cannot open keyfile [/etc/ha.d/authkeys]",
                        "daemon": "heartbeat", "pid": 2959, "time": "2007/12/18_09:06:32",
                        "host": None, "line": error}]


def test_ha_log_egrep_fallback_and_nothing():
    entries = parsers.parse_ha_log("something odd FATAL: cannot continue\n")
    assert [(e["level"], e["message"]) for e in entries] == [("fatal", "cannot continue")]
    assert parsers.parse_ha_log("") == []


# --------------------------------------------------------------------------- pg_dumpall


def test_pg_dumpall_clean_log():
    r = parsers.parse_pg_dumpall_log(read(CAP / "pg_dumpall_v_ok.log"))
    assert r["ok"] is True and r["errors"] == []
    assert r["databases"] == ["template1", "gyom_db", "postgres"]


def test_pg_dumpall_pg_dump_failed_on_one_database():
    r = parsers.parse_pg_dumpall_log(read(CAP / "pg_dumpall_v_pg_dump_failed.log"))
    assert r["ok"] is False
    assert r["errors"] == [
        "pg_dump: error: query failed: ERROR:  permission denied for table secret | "
        "pg_dump: detail: Query was: LOCK TABLE public.secret IN ACCESS SHARE MODE",
        'pg_dumpall: error: pg_dump failed on database "gyom_db", exiting',
    ]
    assert r["databases"] == ["template1", "gyom_db"]


def test_pg_dumpall_permission_denied_on_roles():
    r = parsers.parse_pg_dumpall_log(read(CAP / "pg_dumpall_v_permission_denied.log"))
    assert r["errors"] == [
        "pg_dumpall: error: query failed: ERROR:  permission denied for table pg_authid | "
        "pg_dumpall: detail: Query was: SELECT rolname FROM pg_authid WHERE rolname !~ '^pg_' "
        "ORDER BY 1"]


def test_pg_dumpall_no_server():
    r = parsers.parse_pg_dumpall_log(read(CAP / "pg_dumpall_v_no_server.log"))
    assert r["ok"] is False
    assert r["errors"] == [
        'pg_dumpall: error: connection to server on socket "/tmp/hatest-pg/.s.PGSQL.25499" '
        'failed: No such file or directory Is the server running locally and accepting '
        'connections on that socket?']


def test_pg_dumpall_2008_oids_option_is_gone():
    r = parsers.parse_pg_dumpall_log(read(CAP / "pg_dumpall_o_removed.log"))
    assert r["ok"] is False
    assert r["errors"][0].startswith("/usr/lib/postgresql/15/bin/pg_dumpall: invalid option "
                                     "-- 'o'")


def test_pg_dumpall_82_wording():
    log = ("pg_dumpall: could not connect to database \"template1\": could not connect to "
           "server: No such file or directory\n"
           "pg_dump: SQL command failed\n"
           "pg_dump: Error message from server: ERROR:  permission denied for relation secret\n"
           "pg_dump: The command was: LOCK TABLE public.secret IN ACCESS SHARE MODE\n")
    r = parsers.parse_pg_dumpall_log(log)
    assert len(r["errors"]) == 4


def test_pg_dumpall_table_named_error_is_not_an_error():
    log = 'pg_dump: dumping contents of table "public.error_log"\n' \
          'pg_dump: creating TABLE "public.error_log"\n'
    assert parsers.parse_pg_dumpall_log(log)["ok"] is True


# --------------------------------------------------------------------------- vacuumdb


def test_vacuumdb_full_analyze_all_ok():
    r = parsers.parse_vacuumdb_log(read(CAP / "vacuumdb_afzv_ok.log"))
    assert r["ok"] is True and r["errors"] == [] and r["warnings"] == []
    assert r["tables"] == 206


def test_vacuumdb_not_owner_warnings():
    r = parsers.parse_vacuumdb_log(read(CAP / "vacuumdb_fzv_not_owner.log"))
    assert r["ok"] is True
    assert len(r["warnings"]) == 70
    assert 'WARNING:  skipping "t1" --- only table or database owner can vacuum it' \
        in r["warnings"]
    assert r["tables"] == 0


def test_vacuumdb_errors():
    r = parsers.parse_vacuumdb_log(read(CAP / "vacuumdb_fzv_no_such_table.log"))
    assert r["ok"] is False
    assert r["errors"] == ['vacuumdb: error: query failed: ERROR:  relation "nosuchtable" '
                           'does not exist']
    r = parsers.parse_vacuumdb_log(read(CAP / "vacuumdb_afzv_no_server.log"))
    assert r["ok"] is False and "Is the server running locally" in r["errors"][0]


def test_vacuumdb_with_stdout_lists_databases():
    log = 'vacuumdb: vacuuming database "gyom_db"\n' + read(CAP / "vacuumdb_fzv_one_table.log")
    r = parsers.parse_vacuumdb_log(log)
    assert r == {"ok": True, "errors": [], "warnings": [], "databases": ["gyom_db"],
                 "tables": 1}


def test_ha_log_reads_pacemakerd_lines_with_a_padded_daemon_name():
    from hatasks.parsers import parse_ha_log

    line = ("Nov 25 17:20:01.123 db01 pacemakerd          [67] (pcmk_child_exit) \terror: "
            "pacemaker-controld[71] exited with status 1")
    found = parse_ha_log(line)
    assert len(found) == 1
    assert found[0]["daemon"] == "pacemakerd"
    assert found[0]["pid"] == 67
    assert found[0]["level"] == "error"
    assert found[0]["message"].startswith("pacemaker-controld[71] exited")


def test_pg_log_startup_failure_cause_across_a_second_edge():
    # measured in CI: the LOG line naming the parameter and the FATAL one millisecond apart
    log = ('2026-12-01 06:29:46.999 UTC [550] LOG:  invalid value for parameter '
           '"shared_buffers": "lots"\n'
           '2026-12-01 06:29:47.000 UTC [550] FATAL:  configuration file '
           '"/var/lib/postgresql/15/data/postgresql.auto.conf" contains errors\n')
    [e] = parsers.parse_pg_log_errors(log)
    assert e["cause"] == 'invalid value for parameter "shared_buffers": "lots"'
    # another process's line, or one written seconds before, is not the cause
    other = log.replace("[550] LOG", "[549] LOG")
    assert "cause" not in parsers.parse_pg_log_errors(other)[0]
    earlier = log.replace("06:29:46.999", "06:29:44.999")
    assert "cause" not in parsers.parse_pg_log_errors(earlier)[0]
