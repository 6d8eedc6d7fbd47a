package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPasswordFiles(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	client, node := file("client", "client-secret\n"), file("node", "node-secret\r\nignored\n")
	none := func(string) string { return "" }
	cfg, err := parseConfig([]string{"-seeds", "a:1", "-password-file", client, "-node-password-file", node}, none, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Password != "client-secret" || cfg.NodePassword != "node-secret" {
		t.Errorf("passwords %q %q", cfg.Password, cfg.NodePassword)
	}
	// Through the environment, as a container would set them.
	env := map[string]string{"CLUSTERPROXY_NODE_PASSWORD_FILE": node}
	cfg, err = parseConfig([]string{"-seeds", "a:1"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil || cfg.NodePassword != "node-secret" {
		t.Errorf("from the environment: %q, %v", cfg.NodePassword, err)
	}
	cases := map[string][]string{
		"-password and -password-file are exclusive":                 {"-password", "x", "-password-file", client},
		"-node-password-file: open " + filepath.Join(dir, "missing"): {"-node-password-file", filepath.Join(dir, "missing")},
		"empty":                    {"-password-file", file("empty", "\n")},
		"is not a password (limit": {"-password-file", file("big", strings.Repeat("x", 5000))},
	}
	for want, args := range cases {
		_, err := parseConfig(append([]string{"-seeds", "a:1"}, args...), none, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v, want an error with %q", args, err, want)
		}
	}
}
