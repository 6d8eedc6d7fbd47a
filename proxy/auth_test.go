package proxy_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/clusterproxy/clusterproxy/metrics"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func mustUsers(t *testing.T, text string) *proxy.Users {
	t.Helper()
	u, err := proxy.ParseUsers(strings.NewReader(text), "test")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

const (
	noPermCmd  = "-NOPERM this user has no permissions to run the '%s' command\r\n"
	noPermKeys = "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"
)

func wantReply(t *testing.T, r *rawConn, want string, args ...string) {
	t.Helper()
	if got := r.do(t, args...); got != want {
		t.Fatalf("%v: got %q, want %q", args, got, want)
	}
}

func noPerm(cmd string) string { return strings.Replace(noPermCmd, "%s", cmd, 1) }

// TestAuthUsers: users from a users file authenticate with AUTH user pass
// and HELLO 3 AUTH; command, category, key and channel rules are enforced
// with Redis's NOPERM errors, in MULTI too; the default user from
// -password keeps working, restricted from dangerous commands.
func TestAuthUsers(t *testing.T) {
	users := mustUsers(t, `
# application user
user alice on #`+sha("alice-pw")+` ~authz:app:* ~{authz:tenant}* &news.* +@read +@write -@dangerous +acl|whoami +multi +exec +publish
user bob off >bob-pw +@all allkeys
user carol on >carol-pw allkeys allchannels allcommands -flushall -config|set
`)
	if len(users.Warnings) != 2 {
		t.Fatalf("warnings for clear-text passwords: %v", users.Warnings)
	}
	p := startProxy(t, shared, proxy.Config{Password: "def-pw", Users: users, RestrictDefaultUser: true}, router.Options{})

	r := dialRaw(t, p.Addr)
	wantReply(t, r, "-NOAUTH Authentication required.\r\n", "GET", "authz:app:1")
	wantReply(t, r, "-WRONGPASS invalid username-password pair or user is disabled.\r\n", "AUTH", "alice", "nope")
	wantReply(t, r, "-WRONGPASS invalid username-password pair or user is disabled.\r\n", "AUTH", "nobody", "alice-pw")
	wantReply(t, r, "-WRONGPASS invalid username-password pair or user is disabled.\r\n", "AUTH", "bob", "bob-pw") // off
	wantReply(t, r, "+OK\r\n", "AUTH", "alice", "alice-pw")
	wantReply(t, r, "$5\r\nalice\r\n", "ACL", "WHOAMI")
	wantReply(t, r, "+OK\r\n", "SET", "authz:app:1", "v")
	wantReply(t, r, "$1\r\nv\r\n", "GET", "authz:app:1")
	wantReply(t, r, "+OK\r\n", "SET", "{authz:tenant}7", "v")
	wantReply(t, r, noPermKeys, "GET", "authz:other")
	wantReply(t, r, noPermKeys, "SET", "other", "v")
	// Every key is checked, across slots too: nothing is written.
	wantReply(t, r, noPermKeys, "MSET", "authz:app:2", "x", "authz:other:2", "y")
	wantReply(t, r, "$-1\r\n", "GET", "authz:app:2")
	wantReply(t, r, ":1\r\n", "DEL", "authz:app:1", "authz:app:1b")
	// Commands without keys are not affected by key patterns.
	if got := r.do(t, "DBSIZE"); got[0] != ':' {
		t.Fatalf("DBSIZE: %q", got)
	}
	wantReply(t, r, noPerm("ping"), "PING") // @connection: not granted
	wantReply(t, r, noPerm("flushall"), "FLUSHALL")
	wantReply(t, r, noPerm("config|set"), "CONFIG", "SET", "slowlog-max-len", "1")
	wantReply(t, r, noPerm("keys"), "KEYS", "*")
	wantReply(t, r, noPerm("script|flush"), "SCRIPT", "FLUSH") // the proxy counts it dangerous
	wantReply(t, r, noPerm("client|list"), "CLIENT", "LIST")
	wantReply(t, r, noPerm("info"), "INFO") // @dangerous in Redis
	// Channels.
	wantReply(t, r, ":0\r\n", "PUBLISH", "news.today", "hi")
	wantReply(t, r, "-NOPERM this user has no permissions to access one of the channels used as arguments\r\n", "PUBLISH", "sports", "hi")
	// In a transaction a refused command aborts EXEC.
	wantReply(t, r, "+OK\r\n", "MULTI")
	wantReply(t, r, "+QUEUED\r\n", "SET", "authz:app:3", "v")
	wantReply(t, r, noPermKeys, "SET", "authz:nope", "v")
	if got := r.do(t, "EXEC"); !strings.HasPrefix(got, "-EXECABORT") {
		t.Fatalf("EXEC after a refused command: %q", got)
	}
	wantReply(t, r, "$-1\r\n", "GET", "authz:app:3")

	// A failed AUTH keeps the session's user.
	wantReply(t, r, "-WRONGPASS invalid username-password pair or user is disabled.\r\n", "AUTH", "carol", "x")
	wantReply(t, r, "$5\r\nalice\r\n", "ACL", "WHOAMI")

	// carol: everything but two commands.
	r2 := dialRaw(t, p.Addr)
	wantReply(t, r2, "+OK\r\n", "AUTH", "carol", "carol-pw")
	wantReply(t, r2, noPerm("flushall"), "FLUSHALL")
	wantReply(t, r2, noPerm("config|set"), "CONFIG", "SET", "slowlog-max-len", "1")
	carol := redis.NewClient(&redis.Options{Addr: p.Addr, Username: "carol", Password: "carol-pw", DisableIdentity: true})
	defer carol.Close()
	if v, err := carol.ConfigGet(context.Background(), "maxmemory").Result(); err != nil || len(v) != 1 {
		t.Fatalf("CONFIG GET: %v %v", v, err)
	}
	if got := r2.do(t, "CLIENT", "LIST"); !strings.Contains(got, "user=alice") {
		t.Fatalf("CLIENT LIST does not show alice: %q", got)
	}

	// The default user: -password, dangerous commands refused.
	r3 := dialRaw(t, p.Addr)
	wantReply(t, r3, "+OK\r\n", "AUTH", "def-pw")
	wantReply(t, r3, "$7\r\ndefault\r\n", "ACL", "WHOAMI")
	wantReply(t, r3, "+OK\r\n", "SET", "authz:def", "v")
	wantReply(t, r3, noPerm("flushall"), "FLUSHALL")
	wantReply(t, r3, noPerm("flushdb"), "FLUSHDB")
	wantReply(t, r3, noPerm("keys"), "KEYS", "authz:*")
	wantReply(t, r3, noPerm("config|get"), "CONFIG", "GET", "requirepass")
	wantReply(t, r3, noPerm("function|flush"), "FUNCTION", "FLUSH")
	if got := r3.do(t, "INFO", "server"); !strings.Contains(got, "redis_version") {
		t.Fatalf("INFO (answered by the proxy) refused to the default user: %q", got)
	}
	if got := r3.do(t, "DEBUG", "SLEEP", "0"); !strings.HasPrefix(got, "-NOPERM") {
		t.Fatalf("DEBUG: %q", got)
	}
	// Switching user on the connection drops what the session remembered of
	// the last user's rights: SET was just allowed, now its key is checked.
	r4 := dialRaw(t, p.Addr)
	wantReply(t, r4, "+OK\r\n", "AUTH", "def-pw")
	wantReply(t, r4, "+OK\r\n", "SET", "authz:other:def", "v")
	wantReply(t, r4, "+OK\r\n", "AUTH", "alice", "alice-pw")
	wantReply(t, r4, noPermKeys, "SET", "authz:other:def", "v2")
	wantReply(t, r4, "+OK\r\n", "AUTH", "def-pw")
	wantReply(t, r4, "$1\r\nv\r\n", "GET", "authz:other:def")

	// go-redis clients: AUTH user pass (RESP2) and HELLO 3 AUTH (RESP3).
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		c := redis.NewClient(&redis.Options{Addr: p.Addr, Protocol: proto, Username: "alice", Password: "alice-pw", DisableIdentity: true})
		defer c.Close()
		if err := c.Set(ctx, "authz:app:go", "v", 0).Err(); err != nil {
			t.Fatalf("RESP%d: %v", proto, err)
		}
		if err := c.Get(ctx, "authz:x").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
			t.Fatalf("RESP%d: GET of a forbidden key: %v", proto, err)
		}
		bad := redis.NewClient(&redis.Options{Addr: p.Addr, Protocol: proto, Username: "alice", Password: "wrong", DisableIdentity: true, MaxRetries: -1})
		defer bad.Close()
		if err := bad.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Fatalf("RESP%d: wrong password: %v", proto, err)
		}
	}

	// Reload: alice loses @write; her session sees it at once. carol is
	// removed: her session must authenticate again.
	err := p.Server.SetUsers(mustUsers(t, "user alice on #"+sha("alice-pw")+" ~authz:app:* +@read +acl|whoami\n"))
	if err != nil {
		t.Fatal(err)
	}
	wantReply(t, r, noPerm("set"), "SET", "authz:app:4", "v")
	wantReply(t, r, "$-1\r\n", "GET", "authz:app:4")
	wantReply(t, r2, "-NOAUTH Authentication required.\r\n", "GET", "authz:app:4")
	wantReply(t, r2, "-WRONGPASS invalid username-password pair or user is disabled.\r\n", "AUTH", "carol", "carol-pw")
	// The default user still comes from -password.
	wantReply(t, r3, "+OK\r\n", "SET", "authz:def", "v2")
	// A bad users file changes nothing.
	if err := p.Server.SetUsers(mustUsers(t, "user alice on +nosuchcommand\n")); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("unknown command in users: %v", err)
	}
	wantReply(t, r, "$5\r\nalice\r\n", "ACL", "WHOAMI")
}

// TestAuthDefaultUser: without -users-file, the -password default user may
// run dangerous commands unless restricted; with a users file that does
// not define it and no password, the default user is off.
func TestAuthDefaultUser(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{Password: "pw"}, router.Options{})
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: p.Addr, Password: "pw", DisableIdentity: true})
	defer c.Close()
	if err := c.ConfigGet(ctx, "slowlog-max-len").Err(); err != nil {
		t.Fatalf("unrestricted default user: CONFIG GET: %v", err)
	}
	if err := c.Keys(ctx, "authdef:*").Err(); err != nil {
		t.Fatalf("unrestricted default user: KEYS: %v", err)
	}

	p2 := startProxy(t, shared, proxy.Config{Users: mustUsers(t, "user app on nopass allkeys +@all\n")}, router.Options{})
	r2 := dialRaw(t, p2.Addr)
	wantReply(t, r2, "-NOAUTH Authentication required.\r\n", "PING")
	wantReply(t, r2, "-WRONGPASS invalid username-password pair or user is disabled.\r\n", "AUTH", "default", "x")
	wantReply(t, r2, "+OK\r\n", "AUTH", "app", "anything")
	wantReply(t, r2, "+PONG\r\n", "PING")
	// RESET drops the authentication.
	wantReply(t, r2, "+RESET\r\n", "RESET")
	wantReply(t, r2, "-NOAUTH Authentication required.\r\n", "PING")
}

// TestAuthRateLimit: after AuthMaxFailures failures from one address, even
// a right password is refused until AuthBlockTime has passed; every failure
// is counted in clusterproxy_auth_failures_total.
func TestAuthRateLimit(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, shared, proxy.Config{Password: "pw", Observer: m,
		AuthMaxFailures: 3, AuthFailureWindow: time.Minute, AuthBlockTime: 1500 * time.Millisecond}, router.Options{})
	r := dialRaw(t, p.Addr)
	for i := 0; i < 3; i++ {
		wantReply(t, r, "-WRONGPASS invalid username-password pair or user is disabled.\r\n", "AUTH", "bad")
	}
	began := time.Now()
	// A new connection from the same address is refused too.
	r2 := dialRaw(t, p.Addr)
	if got := r2.do(t, "AUTH", "pw"); !strings.HasPrefix(got, "-ERR proxy: too many failed authentication attempts from 127.0.0.1") {
		t.Fatalf("AUTH while blocked: %q", got)
	}
	if got := r2.do(t, "HELLO", "3", "AUTH", "default", "pw"); !strings.HasPrefix(got, "-ERR proxy: too many failed") {
		t.Fatalf("HELLO AUTH while blocked: %q", got)
	}
	if v := metricValue(t, reg, "clusterproxy_auth_failures_total", nil); v != 5 {
		t.Fatalf("auth failures = %v, want 5", v)
	}
	for time.Since(began) < 1600*time.Millisecond {
		time.Sleep(100 * time.Millisecond)
	}
	wantReply(t, r2, "+OK\r\n", "AUTH", "pw")
	wantReply(t, r2, "+PONG\r\n", "PING")
}

// TestACLDryrunUsers: ACL USERS lists the proxy's users and ACL DRYRUN
// checks a command against one of them with Redis's answers (naming the
// command, key or channel refused), without running it; a restricted
// default user may run neither.
func TestACLDryrunUsers(t *testing.T) {
	users := mustUsers(t, `
user ops on >ops-pw allkeys allchannels +@all
user alice on >alice-pw ~app:* &news:* +@read +@write +@pubsub -@dangerous
`)
	p := startProxy(t, shared, proxy.Config{Password: "def-pw", Users: users, RestrictDefaultUser: true}, router.Options{})
	r := dialRaw(t, p.Addr)
	wantReply(t, r, "+OK\r\n", "AUTH", "default", "def-pw")
	wantReply(t, r, noPerm("acl|users"), "ACL", "USERS")
	wantReply(t, r, noPerm("acl|dryrun"), "ACL", "DRYRUN", "alice", "GET", "app:1")
	wantReply(t, r, "+OK\r\n", "AUTH", "ops", "ops-pw")
	if got := r.do(t, "ACL", "USERS"); got != "*3\r\n" {
		t.Fatalf("ACL USERS: %q", got)
	}
	for _, name := range []string{"alice", "default", "ops"} {
		if got := r.reply(t); got != "$"+strconv.Itoa(len(name))+"\r\n"+name+"\r\n" {
			t.Fatalf("ACL USERS: %q, want %s", got, name)
		}
	}
	for _, tc := range []struct {
		want string
		args []string
	}{
		{"+OK\r\n", []string{"alice", "GET", "app:1"}},
		{"+OK\r\n", []string{"alice", "PUBLISH", "news:today", "x"}},
		{bulk("This user has no permissions to access the 'other' key"), []string{"alice", "MSET", "app:1", "v", "other", "w"}},
		{bulk("This user has no permissions to run the 'flushall' command"), []string{"alice", "FLUSHALL"}},
		{bulk("This user has no permissions to access the 'sport' channel"), []string{"alice", "SUBSCRIBE", "news:x", "sport"}},
		{bulk("This user has no permissions to run the 'config|get' command"), []string{"default", "CONFIG", "GET", "maxmemory"}},
		{"+OK\r\n", []string{"default", "GET", "any"}},
		{"-ERR User 'nobody' not found\r\n", []string{"nobody", "GET", "x"}},
		{"-ERR Command 'NOSUCH' not found\r\n", []string{"alice", "NOSUCH"}},
		{"-ERR Command 'CONFIG' not found\r\n", []string{"alice", "CONFIG", "NOPE"}},
		{"-ERR wrong number of arguments for 'config' command\r\n", []string{"alice", "CONFIG"}},
		{"-ERR wrong number of arguments for 'get' command\r\n", []string{"alice", "GET"}},
	} {
		wantReply(t, r, tc.want, append([]string{"ACL", "DRYRUN"}, tc.args...)...)
	}
	// Nothing ran.
	if n, err := testcluster.NewClusterClient(t, shared).Exists(context.Background(), "app:1").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS app:1 = %d, %v: ACL DRYRUN ran its command", n, err)
	}
}

func bulk(s string) string { return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }

// TestACLLog: ACL LOG records the proxy users' refused commands, keys and
// channels and failed authentications, newest first, grouping repeats, in
// Redis 7.0's fields; ACL LOG count and RESET work.
func TestACLLog(t *testing.T) {
	users := mustUsers(t, `
user ops on >ops-pw allkeys allchannels +@all
user alice on >alice-pw ~app:* &news:* +@read +@write +@pubsub +@transaction -@dangerous
`)
	p := startProxy(t, shared, proxy.Config{Users: users}, router.Options{})
	a := dialFrames(t, p.Addr, 2)
	a.do(t, "+OK", "AUTH", "alice", "alice-pw")
	a.do(t, "-NOPERM *", "GET", "other")
	a.do(t, "-NOPERM *", "FLUSHALL")
	a.do(t, "-NOPERM *", "FLUSHALL")
	a.do(t, "-NOPERM *", "PUBLISH", "sport", "x")
	a.do(t, "+OK", "MULTI")
	a.do(t, "-NOPERM *", "SET", "secret", "x")
	a.do(t, "-EXECABORT *", "EXEC")
	a.do(t, "-WRONGPASS *", "AUTH", "alice", "wrong")

	ops := dialFrames(t, p.Addr, 2)
	ops.send(t, []string{"HELLO", "3", "AUTH", "ops", "ops-pw"}) // a map and a double per entry
	ops.next(t)
	logEntries := func(args ...string) ([]byte, [][]byte) {
		t.Helper()
		ops.send(t, append([]string{"ACL", "LOG"}, args...))
		frame, err := ops.rd.ReadReply()
		if err != nil {
			t.Fatal(err)
		}
		entries, _, err := resp.Elements(frame, nil)
		if err != nil {
			t.Fatalf("ACL LOG %v: %v: %q", args, err, frame)
		}
		return frame, entries
	}
	frame, entries := logEntries()
	want := []string{
		"count 1 reason auth context toplevel object AUTH username alice age-seconds * client-info id=* user=alice *",
		"count 1 reason key context multi object secret username alice age-seconds * client-info id=* cmd=set user=alice *",
		"count 1 reason channel context toplevel object sport username alice age-seconds * client-info *",
		"count 2 reason command context toplevel object flushall username alice age-seconds * client-info *",
		"count 1 reason key context toplevel object other username alice age-seconds * client-info *",
	}
	if len(entries) != len(want) {
		t.Fatalf("ACL LOG has %d entries, want %d: %q", len(entries), len(want), frame)
	}
	for i, e := range entries {
		if got := describeFrame(e); !matches(want[i], got) {
			t.Fatalf("ACL LOG entry %d:\n%s\nwant\n%s", i, got, want[i])
		}
	}
	if !strings.HasPrefix(string(entries[0]), "%7\r\n") || !strings.Contains(string(entries[0]), "age-seconds\r\n,") {
		t.Fatalf("ACL LOG entry in RESP3 is not a map with a double: %q", entries[0])
	}
	if frame, entries := logEntries("1"); len(entries) != 1 || !matches("count 1 reason auth *", describeFrame(entries[0])) {
		t.Fatalf("ACL LOG 1: %q", frame)
	}
	if frame, entries := logEntries("-1"); len(entries) != 0 {
		t.Fatalf("ACL LOG -1: %q", frame)
	}
	ops.do(t, "-ERR value is not an integer or out of range", "ACL", "LOG", "x")
	ops.do(t, "+OK", "ACL", "LOG", "RESET")
	if frame, entries := logEntries(); len(entries) != 0 {
		t.Fatalf("ACL LOG after RESET: %q", frame)
	}
	// alice may not read the log.
	a.do(t, "-NOPERM this user has no permissions to run the 'acl|log' command", "ACL", "LOG")
}

// TestACLListGetUser: ACL LIST and ACL GETUSER describe the proxy's users
// as they are checked. Each ACL LIST line, read back as a users file,
// gives the same users (the same lines and the same DRYRUN verdicts), and
// its rules are valid Redis ACL rules (a node takes them). A restricted
// default user may not see them.
func TestACLListGetUser(t *testing.T) {
	ctx := context.Background()
	users := mustUsers(t, `
user ops on >ops-pw allkeys allchannels +@all
user alice on >alice-pw >alice-pw2 ~app:* ~{t}* &news:* +@read +@write +@pubsub -@dangerous
user bob on >bob-pw ~b:* +get +set +config|get +client +@gateway
user carol off nopass resetchannels -@all
`)
	p := startProxy(t, shared, proxy.Config{Password: "def-pw", Users: users, RestrictDefaultUser: true}, router.Options{})
	r := dialRaw(t, p.Addr)
	wantReply(t, r, "+OK\r\n", "AUTH", "default", "def-pw")
	wantReply(t, r, noPerm("acl|list"), "ACL", "LIST")
	wantReply(t, r, noPerm("acl|getuser"), "ACL", "GETUSER", "alice")

	ops := p.client(t, 2)
	if err := ops.Do(ctx, "AUTH", "ops", "ops-pw").Err(); err != nil {
		t.Fatal(err)
	}
	list, err := ops.Do(ctx, "ACL", "LIST").StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]string{}
	for _, l := range list {
		byName[strings.Fields(l)[1]] = l
	}
	for name, want := range map[string]string{
		"ops":   "user ops on #" + sha("ops-pw") + " ~* &* +@all",
		"carol": "user carol off nopass resetchannels -@all",
	} {
		if byName[name] != want {
			t.Errorf("ACL LIST %s: %q, want %q", name, byName[name], want)
		}
	}
	for _, want := range []string{"user alice on #" + sha("alice-pw") + " #" + sha("alice-pw2") + " ~app:* ~{t}* resetchannels &news:* ",
		"user bob on #" + sha("bob-pw") + " ~b:* resetchannels -@all "} {
		name := strings.Fields(want)[1]
		if !strings.HasPrefix(byName[name], want) {
			t.Errorf("ACL LIST %s: %q, want it to start with %q", name, byName[name], want)
		}
	}
	if len(list) != 5 || !strings.HasPrefix(list[0], "user alice ") || !strings.HasPrefix(list[4], "user ops ") {
		t.Errorf("ACL LIST: want the five users in name order:\n%s", strings.Join(list, "\n"))
	}
	if want := "+cl.throttle"; !strings.Contains(byName["bob"], " +@gateway") && !strings.Contains(byName["bob"], want) {
		t.Errorf("ACL LIST bob lacks the gateway commands: %q", byName["bob"])
	}
	for _, want := range []string{" +get", " +set", " +config|get", " +client"} {
		if !strings.Contains(byName["bob"]+" ", want+" ") {
			t.Errorf("ACL LIST bob: %q lacks %q", byName["bob"], want)
		}
	}

	// Read back, the lines give the same users.
	again := startProxy(t, shared, proxy.Config{Users: mustUsers(t, strings.Join(list, "\n"))}, router.Options{})
	ops2 := again.client(t, 2)
	if err := ops2.Do(ctx, "AUTH", "ops", "ops-pw").Err(); err != nil {
		t.Fatal(err)
	}
	list2, err := ops2.Do(ctx, "ACL", "LIST").StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(list2, "\n") != strings.Join(list, "\n") {
		t.Errorf("ACL LIST read back:\n%s\nwant\n%s", strings.Join(list2, "\n"), strings.Join(list, "\n"))
	}
	for _, args := range [][]string{
		{"alice", "GET", "app:1"}, {"alice", "SET", "{t}x", "v"}, {"alice", "GET", "other"}, {"alice", "FLUSHALL"},
		{"alice", "PUBLISH", "news:1", "m"}, {"alice", "SUBSCRIBE", "sport"}, {"alice", "CONFIG", "GET", "x"},
		{"bob", "GET", "b:1"}, {"bob", "CONFIG", "GET", "x"}, {"bob", "CONFIG", "SET", "x", "y"}, {"bob", "CLIENT", "LIST"},
		{"bob", "CL.THROTTLE", "b:1", "1", "1", "1"}, {"bob", "DEL", "b:1"}, {"default", "FLUSHALL"}, {"default", "GET", "x"},
		{"carol", "GET", "x"},
	} {
		cmd := append([]any{"ACL", "DRYRUN"}, toAny(args)...)
		v1, e1 := ops.Do(ctx, cmd...).Result()
		v2, e2 := ops2.Do(ctx, cmd...).Result()
		if fmt.Sprint(v1, e1) != fmt.Sprint(v2, e2) {
			t.Errorf("ACL DRYRUN %v: %v %v before, %v %v read back", args, v1, e1, v2, e2)
		}
	}

	// A node takes the rules, but for the proxy's gateway commands and
	// HOTKEYS (Redis 8.6), which a 7.x node does not have.
	node := redis.NewClient(&redis.Options{Addr: shared.Addrs()[0]})
	defer node.Close()
	gateway := regexp.MustCompile(`^[-+](@gateway|cl\.|rl\.|cache\.|ctx\.|hotkeys)`)
	for _, name := range []string{"alice", "carol", "ops"} {
		var rules []string
		for _, r := range strings.Fields(byName[name])[2:] {
			if !gateway.MatchString(r) {
				rules = append(rules, r)
			}
		}
		if err := node.Do(ctx, append([]any{"ACL", "SETUSER", "acl-list-" + name}, toAny(rules)...)...).Err(); err != nil {
			t.Errorf("a node refuses %s's rules %q: %v", name, rules, err)
		}
		node.Do(ctx, "ACL", "DELUSER", "acl-list-"+name)
	}

	// GETUSER: Redis 7.0's fields.
	got, err := ops.Do(ctx, "ACL", "GETUSER", "alice").Slice()
	if err != nil {
		t.Fatal(err)
	}
	commands := byName["alice"][strings.Index(byName["alice"], " &news:* ")+len(" &news:* "):]
	want := []any{"flags", []any{"on"}, "passwords", []any{sha("alice-pw"), sha("alice-pw2")},
		"commands", commands, "keys", "~app:* ~{t}*", "channels", "&news:*", "selectors", []any{}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ACL GETUSER alice:\n%v\nwant\n%v", got, want)
	}
	if got, err := ops.Do(ctx, "ACL", "GETUSER", "carol").Slice(); err != nil || fmt.Sprint(got) != "[flags [off nopass] passwords [] commands -@all keys  channels  selectors []]" {
		t.Errorf("ACL GETUSER carol: %v, %v", got, err)
	}
	if err := ops.Do(ctx, "ACL", "GETUSER", "nobody").Err(); err != redis.Nil {
		t.Errorf("ACL GETUSER nobody: %v, want nil", err)
	}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
