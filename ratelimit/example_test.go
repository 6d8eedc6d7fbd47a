package ratelimit_test

import (
	"context"
	"fmt"

	"github.com/clusterproxy/clusterproxy/ratelimit"
	"github.com/redis/go-redis/v9"
)

// ExampleLimiter_Throttle is redis-cell's example: 30 per minute with a
// burst of 15.
func ExampleLimiter_Throttle() {
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: shared.Addrs()})
	defer client.Close()
	lim, err := ratelimit.New(client, ratelimit.Options{})
	if err != nil {
		panic(err)
	}
	r, err := lim.Throttle(context.Background(), "example:user123", 15, 30, 60, 1)
	if err != nil {
		panic(err)
	}
	fmt.Println(r.Values())
	// Output: [0 16 15 -1 2]
}
