package deploy

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// nodeNames are the six Redis services of the compose stack.
var nodeNames = []string{"redis-node-1", "redis-node-2", "redis-node-3", "redis-node-4", "redis-node-5", "redis-node-6"}

// loadCompose loads docker-compose.yml with the real Compose loader, as
// `docker compose` would, with no environment (defaults apply) and the given
// profiles enabled.
func loadCompose(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"docker-compose.yml"},
		cli.WithWorkingDirectory("."),
		cli.WithEnv(nil),
		cli.WithProfiles(profiles),
		cli.WithResolvedPaths(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose loader: %v", err)
	}
	return p
}

func TestComposeTopology(t *testing.T) {
	p := loadCompose(t)
	here, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}

	// Without the monitoring profile: the six nodes, cluster-init, the proxy.
	want := append(slices.Clone(nodeNames), "cluster-init", "proxy")
	got := p.ServiceNames()
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}

	net, ok := p.Networks["cluster"]
	if !ok || net.Driver != "bridge" || len(net.Ipam.Config) != 1 {
		t.Fatalf("network cluster: %+v, want a bridge with one fixed subnet", net)
	}
	subnet, err := netip.ParsePrefix(net.Ipam.Config[0].Subnet)
	if err != nil {
		t.Fatalf("subnet: %v", err)
	}

	redisConf := filepath.Join(here, "redis.conf")
	ips := map[string]bool{}
	for i, name := range nodeNames {
		s := p.Services[name]
		if !strings.HasPrefix(s.Image, "redis:7.") || strings.Count(s.Image, ".") != 2 {
			t.Errorf("%s: image %q, want the official image pinned to a 7.x.y tag", name, s.Image)
		}
		if s.Restart != types.RestartPolicyUnlessStopped {
			t.Errorf("%s: restart %q", name, s.Restart)
		}
		if len(s.Ports) != 0 {
			t.Errorf("%s publishes ports %+v; nodes must be reachable only inside the network", name, s.Ports)
		}
		// Its own named volume at /data.
		if len(s.Volumes) != 1 || s.Volumes[0].Type != types.VolumeTypeVolume || s.Volumes[0].Source != name || s.Volumes[0].Target != "/data" {
			t.Errorf("%s: volumes %+v, want named volume %s at /data", name, s.Volumes, name)
		}
		if _, ok := p.Volumes[name]; !ok {
			t.Errorf("volume %s not declared", name)
		}
		// A static address inside the subnet, different for every node and
		// announced as such.
		nc := s.Networks["cluster"]
		if nc == nil || nc.Ipv4Address == "" {
			t.Fatalf("%s: no static address on network cluster", name)
		}
		ip, err := netip.ParseAddr(nc.Ipv4Address)
		if err != nil || !subnet.Contains(ip) || ips[ip.String()] {
			t.Errorf("%s: address %q not a distinct address of %s", name, nc.Ipv4Address, subnet)
		}
		ips[ip.String()] = true
		// The shared redis.conf, plus the auth include from the secrets.
		cmd := []string(s.Command)
		wantCmd := []string{"redis-server", "/usr/local/etc/redis/redis.conf", "--include", "/run/secrets/redis_auth.conf", "--cluster-announce-ip", ip.String()}
		if !slices.Equal(cmd, wantCmd) {
			t.Errorf("%s: command %q, want %q", name, cmd, wantCmd)
		}
		if len(s.Configs) != 1 || s.Configs[0].Target != "/usr/local/etc/redis/redis.conf" ||
			p.Configs[s.Configs[0].Source].File != redisConf {
			t.Errorf("%s: configs %+v, want deploy/redis.conf at /usr/local/etc/redis/redis.conf", name, s.Configs)
		}
		if !hasSecrets(s, "redis_auth.conf", "node_password") {
			t.Errorf("%s: secrets %+v", name, s.Secrets)
		}
		if len(s.Environment) != 0 {
			t.Errorf("%s: environment %v; secrets must not be passed as environment", name, s.Environment)
		}
		// PING healthcheck that only a PONG satisfies (NOAUTH fails it).
		hc := s.HealthCheck
		if hc == nil || len(hc.Test) != 2 || hc.Test[0] != "CMD-SHELL" ||
			!strings.Contains(hc.Test[1], "/run/secrets/node_password") ||
			!strings.Contains(hc.Test[1], "ping") || !strings.Contains(hc.Test[1], "grep -qx PONG") {
			t.Errorf("%s: healthcheck %+v", name, hc)
		}
		if i == 0 {
			t.Logf("node healthcheck: %q", hc.Test)
		}
	}

	// cluster-init: one shot, after every node is healthy, with the script
	// from deploy/ and the node password as a secret.
	in := p.Services["cluster-init"]
	if in.Restart != "no" || len(in.Ports) != 0 {
		t.Errorf("cluster-init: restart %q ports %+v", in.Restart, in.Ports)
	}
	for _, n := range nodeNames {
		if d, ok := in.DependsOn[n]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("cluster-init: depends_on %s = %+v, want service_healthy", n, d)
		}
	}
	if len(in.Configs) != 1 || p.Configs[in.Configs[0].Source].File != filepath.Join(here, "cluster-init.sh") ||
		!slices.Equal([]string(in.Entrypoint), []string{"sh", in.Configs[0].Target}) {
		t.Errorf("cluster-init: entrypoint %q configs %+v", in.Entrypoint, in.Configs)
	}
	if !hasSecrets(in, "node_password") {
		t.Errorf("cluster-init: secrets %+v", in.Secrets)
	}
	nodes := in.Environment["CLUSTER_NODES"]
	if nodes == nil || len(strings.Fields(*nodes)) != 6 {
		t.Fatalf("cluster-init: CLUSTER_NODES %v", nodes)
	}
	for _, a := range strings.Fields(*nodes) {
		if !ips[strings.TrimSuffix(a, ":6379")] {
			t.Errorf("cluster-init: %s is not a node address", a)
		}
	}

	// proxy: built here, after cluster-init succeeded, ports on loopback,
	// healthcheck by its own binary, passwords from files.
	px := p.Services["proxy"]
	if px.Build == nil || px.Build.Context != filepath.Dir(here) || px.Build.Dockerfile != "Dockerfile" {
		t.Errorf("proxy: build %+v, want the repository's Dockerfile", px.Build)
	}
	if d, ok := px.DependsOn["cluster-init"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("proxy: depends_on %+v, want cluster-init service_completed_successfully", px.DependsOn)
	}
	var published []string
	for _, pc := range px.Ports {
		published = append(published, pc.HostIP+":"+pc.Published+"->"+strconv.Itoa(int(pc.Target)))
	}
	if !slices.Equal(published, []string{"127.0.0.1:6380->6380", "127.0.0.1:9121->9121"}) {
		t.Errorf("proxy: ports %v, want the proxy and metrics ports on 127.0.0.1 only", published)
	}
	if hc := px.HealthCheck; hc == nil || !slices.Equal([]string(hc.Test), []string{"CMD", "/proxy", "healthcheck", "-metrics-addr", "127.0.0.1:9121", "-path", "/readyz"}) {
		t.Errorf("proxy: healthcheck %+v", px.HealthCheck)
	}
	args := strings.Join(px.Command, " ")
	for _, want := range []string{"-metrics-addr=0.0.0.0:9121", "-listen=0.0.0.0:6380",
		"-node-password-file=/run/secrets/node_password", "-password-file=/run/secrets/client_password"} {
		if !strings.Contains(args, want) {
			t.Errorf("proxy: command %q lacks %s", args, want)
		}
	}
	if !hasSecrets(px, "node_password", "client_password") || len(px.Environment) != 0 {
		t.Errorf("proxy: secrets %+v environment %v", px.Secrets, px.Environment)
	}

	// Every secret is a file under deploy/secrets/, which gen-secrets.sh writes
	// and git ignores.
	for name, s := range p.Secrets {
		if filepath.Dir(s.File) != filepath.Join(here, "secrets") {
			t.Errorf("secret %s: file %s, want one under deploy/secrets", name, s.File)
		}
	}
}

func TestComposeMonitoringProfile(t *testing.T) {
	p := loadCompose(t, "monitoring")
	for _, name := range []string{"prometheus", "grafana", "redis-exporter"} {
		s, ok := p.Services[name]
		if !ok {
			t.Fatalf("service %s missing with the monitoring profile", name)
		}
		if !slices.Equal(s.Profiles, []string{"monitoring"}) {
			t.Errorf("%s: profiles %v", name, s.Profiles)
		}
		if strings.HasSuffix(s.Image, ":latest") || !strings.Contains(s.Image, ":") {
			t.Errorf("%s: image %q is not pinned", name, s.Image)
		}
	}
	here, _ := filepath.Abs(".")
	prom := p.Services["prometheus"]
	if len(prom.Configs) != 1 || p.Configs[prom.Configs[0].Source].File != filepath.Join(here, "prometheus", "prometheus.yml") {
		t.Errorf("prometheus: configs %+v", prom.Configs)
	}
	conf, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"proxy:9121", "redis-exporter:9121", "/scrape"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("prometheus.yml does not scrape %s", want)
		}
	}
	if ex := p.Services["redis-exporter"]; !slices.Contains([]string(ex.Command), "--is-cluster") || !hasSecrets(ex, "redis_exporter_passwords.json") {
		t.Errorf("redis-exporter: command %q secrets %+v", ex.Command, ex.Secrets)
	}
	g := p.Services["grafana"]
	var mounts []string
	for _, v := range g.Volumes {
		mounts = append(mounts, v.Source+":"+v.Target)
	}
	for _, want := range []string{filepath.Join(here, "grafana", "provisioning") + ":/etc/grafana/provisioning",
		filepath.Join(here, "grafana", "dashboards") + ":/etc/grafana/dashboards"} {
		if !slices.Contains(mounts, want) {
			t.Errorf("grafana: mounts %v lack %s", mounts, want)
		}
	}
	if v := g.Environment["GF_SECURITY_ADMIN_PASSWORD__FILE"]; v == nil || !hasSecrets(g, "grafana_admin_password") {
		t.Errorf("grafana: admin password not from a secret file")
	}
	for _, f := range []string{"grafana/provisioning/datasources/prometheus.yml", "grafana/provisioning/dashboards/clusterproxy.yml", "grafana/dashboards/clusterproxy.json"} {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
	// The nodes, cluster-init and proxy are still there, and no profile
	// other than monitoring exists.
	if len(p.Services) != 11 {
		t.Errorf("%d services with the monitoring profile, want 11", len(p.Services))
	}
}

// TestRedisConfIsShared checks that the file compose mounts into every node
// is the file the local launcher embeds (deploy.RedisConf), so the settings
// the stack ships are the ones the integration tests run with.
func TestRedisConfIsShared(t *testing.T) {
	p := loadCompose(t)
	onDisk, err := os.ReadFile("redis.conf")
	if err != nil {
		t.Fatal(err)
	}
	if string(onDisk) != RedisConf {
		t.Fatal("deploy.RedisConf differs from deploy/redis.conf")
	}
	for _, name := range nodeNames {
		s := p.Services[name]
		src := p.Configs[s.Configs[0].Source].File
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != RedisConf {
			t.Errorf("%s mounts %s, whose content is not deploy.RedisConf", name, src)
		}
	}
	for _, want := range []string{"cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 5000",
		"appendonly yes", "appendfsync everysec", "protected-mode yes"} {
		if !strings.Contains(RedisConf, "\n"+want+"\n") {
			t.Errorf("redis.conf lacks %q", want)
		}
	}
}

func hasSecrets(s types.ServiceConfig, names ...string) bool {
	var have []string
	for _, sec := range s.Secrets {
		have = append(have, sec.Source)
	}
	for _, n := range names {
		if !slices.Contains(have, n) {
			return false
		}
	}
	return true
}
