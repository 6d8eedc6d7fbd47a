package proxy

import (
	"strings"
	"testing"

	"github.com/clusterproxy/clusterproxy/internal/command"
)

func TestResendable(t *testing.T) {
	spec := func(name string, f command.Flags) *command.Spec { return &command.Spec{Name: name, Flags: f} }
	args := func(s string) [][]byte {
		var out [][]byte
		for _, f := range strings.Fields(s) {
			out = append(out, []byte(f))
		}
		return out
	}
	for _, tc := range []struct {
		spec *command.Spec
		args string
		want bool
	}{
		{spec("get", command.ReadOnly), "GET k", true},
		{spec("set", command.Write), "SET k v", true},
		{spec("set", command.Write), "SET k v EX 10 XX", true},
		{spec("set", command.Write), "SET k v nx", false},
		{spec("set", command.Write), "SET k v Get", false},
		{spec("setex", command.Write), "SETEX k 10 v", true},
		{spec("mset", command.Write), "MSET a 1 b 2", true},
		{spec("incr", command.Write), "INCR k", false},
		{spec("del", command.Write), "DEL k", false},
		{spec("hset", command.Write), "HSET h f v", false},
		{spec("eval", command.MayReplicate), "EVAL s 0", false},
	} {
		if got := resendable(tc.spec, args(tc.args)); got != tc.want {
			t.Errorf("%s: resendable = %v, want %v", tc.args, got, tc.want)
		}
	}
}
