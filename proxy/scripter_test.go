package proxy_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

// The server's Scripter runs go-redis scripts through the router, on every
// master, with go-redis's value shapes and its NOSCRIPT fallback.
func TestScripterRunsScriptsOnEveryMaster(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	sc := p.Server.Scripter()
	ctx := context.Background()
	script := redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1])
return {redis.call('GET', KEYS[1]), tonumber(ARGV[2]) + 1, false, {'nested', 7}, redis.pcall('INCR', 'x{' .. KEYS[1] .. '}', 'extra')}`)
	for _, key := range keysOnEveryMaster(t, p, "scripter", 12) {
		got, err := script.Run(ctx, sc, []string{key}, "v-"+key, 41).Result()
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		vals := got.([]interface{})
		if len(vals) != 5 {
			t.Fatalf("%s: got %#v", key, got)
		}
		want := []interface{}{"v-" + key, int64(42), nil, []interface{}{"nested", int64(7)}}
		if !reflect.DeepEqual(vals[:4], want) {
			t.Fatalf("%s: got %#v, want %#v", key, vals[:4], want)
		}
		if e, ok := vals[4].(redis.Error); !ok || e.Error() == "" {
			t.Fatalf("%s: element 5 = %#v, want a redis.Error", key, vals[4])
		}
	}
	// A nil reply is redis.Nil; an error reply satisfies redis.Error.
	if err := sc.Eval(ctx, "return redis.call('GET', KEYS[1])", []string{"scripter:missing"}).Err(); err != redis.Nil {
		t.Fatalf("nil reply: err = %v, want redis.Nil", err)
	}
	err := sc.Eval(ctx, "return redis.error_reply('MYERR boom')", []string{"scripter:e"}).Err()
	if !redis.HasErrorPrefix(err, "MYERR") {
		t.Fatalf("error reply: err = %v", err)
	}
	// Keys in two slots are refused before anything is sent.
	err = sc.Eval(ctx, "return 1", []string{"scripter:a", "scripter:b"}).Err()
	if !redis.HasErrorPrefix(err, "CROSSSLOT") {
		t.Fatalf("cross-slot: err = %v", err)
	}
	// ScriptLoad puts the script on every master; ScriptExists agrees.
	sha, err := sc.ScriptLoad(ctx, "return 'loaded'").Result()
	if err != nil {
		t.Fatal(err)
	}
	ok, err := sc.ScriptExists(ctx, sha, "0000000000000000000000000000000000000000").Result()
	if err != nil || !reflect.DeepEqual(ok, []bool{true, false}) {
		t.Fatalf("ScriptExists = %v, %v", ok, err)
	}
}
