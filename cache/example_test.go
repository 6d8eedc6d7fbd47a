package cache_test

import (
	"context"
	"fmt"
	"time"

	"github.com/clusterproxy/clusterproxy/cache"
	"github.com/redis/go-redis/v9"
)

// callModel stands for the model call behind the cache.
func callModel(context.Context, []byte) ([]byte, error) { return []byte(`{"answer":42}`), nil }

// One chat request through the cache: a hit answers at once; of many
// concurrent identical requests one calls the model and the others wait
// for its answer.
func Example() {
	ctx := context.Background()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:7000"}})
	c, err := cache.New(rdb, cache.Config{})
	if err != nil {
		panic(err)
	}
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`)
	key, err := cache.Key("chat", "/v1/chat/completions", "gpt-4o", "tenant-42", body)
	if err != nil {
		panic(err) // not a JSON object, bad namespace
	}
	res, err := c.GetWait(ctx, key, 5*time.Second)
	if err != nil {
		return // the cluster failed: call the model without the cache
	}
	switch res.Status {
	case cache.Hit:
		fmt.Printf("%s\n", res.Value) // res.Chunks when res.Streamed
	case cache.Miss:
		answer, err := callModel(ctx, body)
		if err != nil {
			_ = c.Abort(ctx, key, res.Token) // a waiter takes over
			return
		}
		_ = c.Set(ctx, key, res.Token, answer, time.Hour)
		fmt.Printf("%s\n", answer)
	case cache.Wait: // still being filled after 5s
		answer, _ := callModel(ctx, body)
		fmt.Printf("%s\n", answer)
	}
}

// A streamed answer: chunks appended as they come, published at the end.
func Example_stream() {
	ctx := context.Background()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:7000"}})
	c, _ := cache.New(rdb, cache.Config{})
	key, _ := cache.Key("chat", "/v1/chat/completions", "gpt-4o", "", []byte(`{"stream":true,"messages":[]}`))
	res, err := c.Get(ctx, key)
	if err != nil || res.Status != cache.Miss {
		return
	}
	for _, chunk := range []string{"Hel", "lo"} {
		if _, err := c.Append(ctx, key, res.Token, []byte(chunk)); err != nil {
			_ = c.Abort(ctx, key, res.Token)
			return
		}
	}
	_, _ = c.Commit(ctx, key, res.Token, 0) // 0: Config.DefaultTTL
}
