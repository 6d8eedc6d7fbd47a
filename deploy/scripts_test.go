package deploy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGenSecrets runs gen-secrets.sh twice: the first run writes every secret
// the compose file names, the second keeps them unchanged.
func TestGenSecrets(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	run := func() {
		out, err := exec.Command("sh", "gen-secrets.sh", dir).CombinedOutput()
		if err != nil {
			t.Fatalf("gen-secrets.sh: %v\n%s", err, out)
		}
	}
	run()
	p := loadCompose(t, "monitoring")
	first := map[string][]byte{}
	for name, s := range p.Secrets {
		b, err := os.ReadFile(filepath.Join(dir, filepath.Base(s.File)))
		if err != nil {
			t.Fatalf("secret %s: %v", name, err)
		}
		if len(bytes.TrimSpace(b)) < 16 {
			t.Errorf("secret %s: %q is too short", name, b)
		}
		first[name] = b
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("secrets directory mode: %v %v, want 0700", st.Mode(), err)
	}
	node := strings.TrimSpace(string(first["node_password"]))
	if want := "requirepass " + node + "\nmasterauth " + node + "\n"; string(first["redis_auth.conf"]) != want {
		t.Errorf("redis_auth.conf = %q, want %q", first["redis_auth.conf"], want)
	}
	if !strings.Contains(string(first["redis_exporter_passwords.json"]), `"redis://172.30.7.16:6379":"`+node+`"`) {
		t.Errorf("redis_exporter_passwords.json = %s", first["redis_exporter_passwords.json"])
	}
	if bytes.Equal(first["node_password"], first["client_password"]) {
		t.Error("client and node passwords are equal")
	}
	run()
	for name, s := range p.Secrets {
		b, _ := os.ReadFile(filepath.Join(dir, filepath.Base(s.File)))
		if !bytes.Equal(b, first[name]) {
			t.Errorf("secret %s changed on the second run", name)
		}
	}
}

// TestClusterInitAndHealthcheck starts six redis-server processes the way the
// compose file does (deploy/redis.conf plus the generated auth include), runs
// the nodes' healthcheck command and cluster-init.sh against them: the
// healthcheck fails without the password, cluster-init forms the cluster,
// exits 0 when run again, and refuses a node that holds keys.
func TestClusterInitAndHealthcheck(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is required (make deps): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tmp := t.TempDir()
	secrets := filepath.Join(tmp, "secrets")
	if out, err := exec.Command("sh", "gen-secrets.sh", secrets).CombinedOutput(); err != nil {
		t.Fatalf("gen-secrets.sh: %v\n%s", err, out)
	}
	conf, _ := filepath.Abs("redis.conf")
	ports := freePorts(t, 7)
	var addrs []string
	for i, port := range ports {
		dir := filepath.Join(tmp, "node-"+strconv.Itoa(port))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// The compose command line, with a port and directory of our own.
		args := []string{conf, "--include", filepath.Join(secrets, "redis_auth.conf"),
			"--cluster-announce-ip", "127.0.0.1", "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir}
		if i == 6 {
			args = append(args, "--enable-debug-command", "yes") // to put a key on a node without slots
		}
		cmd := exec.Command("redis-server", args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		log, err := os.Create(filepath.Join(dir, "redis.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
			log.Close()
		})
		if i < 6 {
			addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(port))
		}
	}

	// The compose healthcheck, pointed at a local port and password file.
	hc := loadCompose(t).Services["redis-node-1"].HealthCheck.Test[1]
	health := func(port int, pwfile string) error {
		c := strings.ReplaceAll(hc, "/run/secrets/node_password", pwfile)
		c = strings.ReplaceAll(c, "-h 127.0.0.1", "-h 127.0.0.1 -p "+strconv.Itoa(port))
		c = strings.ReplaceAll(c, "$$", "$")
		return exec.CommandContext(ctx, "sh", "-c", c).Run()
	}
	pw := filepath.Join(secrets, "node_password")
	for _, port := range ports {
		for health(port, pw) != nil {
			if ctx.Err() != nil {
				t.Fatalf("node %d never healthy", port)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	empty := filepath.Join(tmp, "empty")
	wrong := filepath.Join(tmp, "wrong")
	_ = os.WriteFile(empty, nil, 0o644)
	_ = os.WriteFile(wrong, []byte("not-the-password\n"), 0o644)
	if err := health(ports[0], empty); err == nil {
		t.Error("healthcheck passed without a password (NOAUTH must fail it)")
	}
	if err := health(ports[0], wrong); err == nil {
		t.Error("healthcheck passed with a wrong password")
	}

	initRun := func(nodes []string) (string, error) {
		cmd := exec.CommandContext(ctx, "sh", "cluster-init.sh")
		cmd.Env = append(os.Environ(), "CLUSTER_NODES="+strings.Join(nodes, " "), "NODE_PASSWORD_FILE="+pw, "INIT_TIMEOUT=60")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := initRun(addrs)
	if err != nil {
		t.Fatalf("cluster-init: %v\n%s", err, out)
	}
	for _, a := range addrs {
		info := redisCLI(t, a, pw, "cluster", "info")
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			t.Fatalf("%s after cluster-init:\n%s", a, info)
		}
	}
	if strings.Count(redisCLI(t, addrs[0], pw, "cluster", "nodes"), "master") != 3 {
		t.Errorf("want three masters:\n%s", redisCLI(t, addrs[0], pw, "cluster", "nodes"))
	}
	out, err = initRun(addrs)
	if err != nil || !strings.Contains(out, "nothing to do") {
		t.Fatalf("second cluster-init: %v\n%s", err, out)
	}

	// A node outside any cluster that holds a key is refused.
	spare := "127.0.0.1:" + strconv.Itoa(ports[6])
	redisCLI(t, spare, pw, "debug", "populate", "1")
	if n := strings.TrimSpace(redisCLI(t, spare, pw, "dbsize")); n != "1" {
		t.Fatalf("spare node holds %s keys, want 1", n)
	}
	out, err = initRun([]string{spare})
	if err == nil || !strings.Contains(out, "holds 1 keys") {
		t.Fatalf("cluster-init over a node with data: %v\n%s", err, out)
	}
}

func redisCLI(t *testing.T, addr, pwfile string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	pw, err := os.ReadFile(pwfile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-cli", append([]string{"--no-auth-warning", "-h", host, "-p", port}, args...)...)
	cmd.Env = append(os.Environ(), "REDISCLI_AUTH="+strings.TrimSpace(string(pw)))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// freePorts returns n loopback ports that are free along with port+10000
// (the cluster bus).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			t.Fatal("no free ports")
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if port+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+10000))
		if err != nil {
			continue
		}
		bus.Close()
		ports = append(ports, port)
	}
	return ports
}
