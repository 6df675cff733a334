package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opmond/opmond/internal/testbin"
)

// pgBin finds a folder holding initdb, postgres and psql: pg_config's, the
// newest Debian one, or the one on PATH.
func pgBin() string {
	ok := func(d string) bool {
		for _, b := range []string{"initdb", "postgres", "psql"} {
			if fi, err := os.Stat(filepath.Join(d, b)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	var cands []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		cands = append(cands, strings.TrimSpace(string(out)))
	}
	deb, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(deb, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	cands = append(cands, deb...)
	if p, err := exec.LookPath("postgres"); err == nil {
		cands = append(cands, filepath.Dir(p))
	}
	for _, d := range cands {
		if ok(d) {
			return d
		}
	}
	return ""
}

// pgServer is a throwaway PostgreSQL cluster in a test's temp folder.
type pgServer struct {
	bin, dir string
	port     int
}

// startPostgres runs initdb and postgres; as root (which PostgreSQL
// refuses) it runs them as the postgres user, which Debian's package makes.
func startPostgres(t *testing.T) *pgServer {
	t.Helper()
	bin := pgBin()
	if bin == "" {
		t.Skip("PostgreSQL is not installed (no initdb, postgres and psql found): apt-get install postgresql")
	}
	dir := t.TempDir()
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, PostgreSQL needs another user and there is no postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
		// The temp folders are root's, mode 0700: let the postgres user in.
		for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	env := []string{"PATH=" + bin + ":/usr/bin:/bin", "LC_ALL=C", "LANG=C", "TZ=UTC"}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-E", "UTF8", "--locale=C", "--auth=trust")
	initdb.Dir, initdb.Env = dir, env
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	s := &pgServer{bin: bin, dir: dir, port: testbin.FreePort(t)}
	pg := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-c", "listen_addresses=127.0.0.1",
		"-c", "port="+strconv.Itoa(s.port), "-c", "unix_socket_directories="+dir)
	var logs bytes.Buffer
	pg.Dir, pg.Env, pg.Stdout, pg.Stderr = dir, env, &syncWriter{w: &logs}, &syncWriter{w: &logs}
	pg.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- pg.Wait() }()
	t.Cleanup(func() {
		_ = pg.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = pg.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := s.psql("postgres", nil, "-c", "SELECT 1"); err == nil {
			return s
		}
		select {
		case err := <-exited:
			t.Fatalf("postgres exited: %v\n%s", err, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres not ready after 60 s\n%s", logs.String())
		}
	}
}

// psql runs psql against database db of the cluster.
func (s *pgServer) psql(db string, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(s.bin, "psql"), append([]string{"-X", "-h", "127.0.0.1", "-p", strconv.Itoa(s.port),
		"-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1"}, args...)...)
	cmd.Env = []string{"PATH=" + s.bin + ":/usr/bin:/bin", "LC_ALL=C.UTF-8", "PGCLIENTENCODING=UTF8"}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("psql %v: %v\n%s", args, err, errb.String())
	}
	return out, nil
}

// upstreamColumns are operational_data's columns with their record field
// names (opmon-protocol.md §9), in the record's field order.
var upstreamColumns = []struct{ field, column, kind string }{
	{"monitoringDataTs", "monitoring_data_ts", "int"}, {"securityServerInternalIp", "security_server_internal_ip", "str"},
	{"securityServerType", "security_server_type", "str"}, {"requestInTs", "request_in_ts", "int"},
	{"requestOutTs", "request_out_ts", "int"}, {"responseInTs", "response_in_ts", "int"},
	{"responseOutTs", "response_out_ts", "int"}, {"clientXRoadInstance", "client_xroad_instance", "str"},
	{"clientMemberClass", "client_member_class", "str"}, {"clientMemberCode", "client_member_code", "str"},
	{"clientSubsystemCode", "client_subsystem_code", "str"}, {"serviceXRoadInstance", "service_xroad_instance", "str"},
	{"serviceMemberClass", "service_member_class", "str"}, {"serviceMemberCode", "service_member_code", "str"},
	{"serviceSubsystemCode", "service_subsystem_code", "str"}, {"serviceCode", "service_code", "str"},
	{"restMethod", "rest_method", "str"}, {"restPath", "rest_path", "str"}, {"xRoadVersion", "xroad_version", "str"},
	{"serviceVersion", "service_version", "str"}, {"representedPartyClass", "represented_party_class", "str"},
	{"representedPartyCode", "represented_party_code", "str"}, {"messageId", "message_id", "str"},
	{"messageUserId", "message_user_id", "str"}, {"messageIssue", "message_issue", "str"},
	{"messageProtocolVersion", "message_protocol_version", "str"}, {"clientSecurityServerAddress", "client_security_server_address", "str"},
	{"serviceSecurityServerAddress", "service_security_server_address", "str"}, {"requestSize", "request_size", "int"},
	{"responseSize", "response_size", "int"}, {"requestMimeSize", "request_mime_size", "int"},
	{"requestAttachmentCount", "request_attachment_count", "int"}, {"responseMimeSize", "response_mime_size", "int"},
	{"responseAttachmentCount", "response_attachment_count", "int"}, {"succeeded", "succeeded", "bool"},
	{"faultCode", "fault_code", "str"}, {"faultString", "fault_string", "str"}, {"xRequestId", "x_request_id", "str"},
	{"statusCode", "status_code", "int"}, {"serviceType", "service_type", "str"},
}

// upstreamRow makes row i: every column filled in some rows and null in
// others (where the schema allows), awkward strings, full-length values.
func upstreamRow(i int, base int64) map[string]any {
	m := map[string]any{}
	in := (base+int64(i))*1000 + int64(i%1000)
	for j, c := range upstreamColumns {
		if j > 7 && (i+j)%4 == 0 && c.field != "succeeded" {
			continue // null
		}
		switch c.kind {
		case "int":
			m[c.field] = in + int64(j)
		case "bool":
			m[c.field] = i%3 != 0
		default:
			m[c.field] = fmt.Sprintf("%s-%d", c.field, i)
		}
	}
	m["monitoringDataTs"] = base + int64((i*7)%50) // several per second, inserted out of order
	m["securityServerType"] = []string{"Client", "Producer"}[i%2]
	m["requestAttachmentCount"], m["responseAttachmentCount"], m["statusCode"] = int64(i%3), int64(i%2), int64(200+i%300)
	if i%4 != 1 {
		m["serviceSubsystemCode"] = nil
		delete(m, "serviceSubsystemCode")
	}
	switch i % 5 {
	case 0:
		m["faultString"] = "it's \"quoted\" \\ back\nslash, tab\t, ünïcödé 日本 " + strings.Repeat("é", 1900)
	case 1:
		m["messageId"] = strings.Repeat("ж", 255)
	case 2:
		m["restPath"] = "/api/v1/x?q=<a>&b='c'"
		m["requestSize"] = int64(1) << 60
	}
	return m
}

func sqlLiteral(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return "'" + strings.ReplaceAll(x, "'", "''") + "'"
	case bool:
		return strconv.FormatBool(x)
	default:
		return fmt.Sprint(x)
	}
}

// TestMigrateFromUpstream: rows in upstream's PostgreSQL table, exported
// with docs/migrate-from-upstream.sql, go through `opmond import` and come
// back from the SOAP query as the same records.
func TestMigrateFromUpstream(t *testing.T) {
	pg := startPostgres(t)
	if _, err := pg.psql("postgres", nil, "-c", `CREATE DATABASE "op-monitor"`); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.psql("op-monitor", nil, "-q", "-f", filepath.Join("testdata", "upstream-schema.sql")); err != nil {
		t.Fatal(err)
	}
	const rows = 600
	base := time.Now().Unix() - 2*86400
	var ins strings.Builder
	var want []map[string]any
	type key struct{ ts, id int64 }
	var order []key
	cols := []string{"id"}
	for _, c := range upstreamColumns {
		cols = append(cols, c.column)
	}
	for i := range rows {
		m := upstreamRow(i, base)
		vals := []string{"nextval('hibernate_sequence')"}
		for _, c := range upstreamColumns {
			vals = append(vals, sqlLiteral(m[c.field]))
		}
		fmt.Fprintf(&ins, "INSERT INTO operational_data (%s) VALUES (%s);\n", strings.Join(cols, ", "), strings.Join(vals, ", "))
		want = append(want, m)
		order = append(order, key{m["monitoringDataTs"].(int64), int64(i + 1)})
	}
	if _, err := pg.psql("op-monitor", []byte(ins.String()), "-q"); err != nil {
		t.Fatal(err)
	}

	// The export exactly as the documentation gives it (plus where the
	// throwaway server listens).
	dir := t.TempDir()
	export := filepath.Join(dir, "operational_data.jsonl")
	sqlFile, _ := filepath.Abs(filepath.Join("docs", "migrate-from-upstream.sql"))
	if _, err := pg.psql("op-monitor", nil, "-f", sqlFile, "-o", export); err != nil {
		t.Fatal(err)
	}
	exported, err := os.ReadFile(export)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(exported, []byte("\n")); n != rows {
		t.Fatalf("export has %d lines, want %d:\n%.2000s", n, rows, exported)
	}
	if bytes.Contains(exported, []byte("null")) {
		t.Error("export holds nulls")
	}

	d := startServe(t, filepath.Join(dir, "opmond"), "")
	if code, out, errOut := testbin.Run(t, nil, "import", "--config", d.config, export); code != 0 || out != fmt.Sprintf("stored %d, rejected 0\n", rows) {
		t.Fatalf("import: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut := testbin.Run(t, nil, "query", "--config", d.config, "--from", "0", "--to", fmt.Sprint(time.Now().Unix()))
	if code != 0 {
		t.Fatalf("query: exit %d %s", code, errOut)
	}
	// Expected: the rows in upstream's query order, monitoringDataTs then id.
	idx := make([]int, rows)
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		if order[a].ts != order[b].ts {
			return int(order[a].ts - order[b].ts)
		}
		return int(order[a].id - order[b].id)
	})
	norm := func(v any) any {
		b, _ := json.Marshal(v)
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var m map[string]any
		_ = dec.Decode(&m)
		return m
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != rows {
		t.Fatalf("query printed %d records, want %d", len(lines), rows)
	}
	for n, i := range idx {
		dec := json.NewDecoder(strings.NewReader(lines[n]))
		dec.UseNumber()
		var got map[string]any
		if err := dec.Decode(&got); err != nil {
			t.Fatal(err)
		}
		if w := norm(want[i]); !reflect.DeepEqual(got, w) {
			t.Fatalf("record %d (row %d):\n got %v\nwant %v", n, i+1, got, w)
		}
	}
}
