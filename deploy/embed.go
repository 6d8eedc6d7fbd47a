// Package deploy holds the deployment files of clusterproxy. Its Go side only
// embeds redis.conf so that the local launcher (dev mode and the integration
// tests) runs nodes with exactly the settings that docker-compose.yml ships.
package deploy

import _ "embed"

// RedisConf is the content of deploy/redis.conf, the node settings shared by the
// compose stack, the dev launcher and the integration tests.
//
//go:embed redis.conf
var RedisConf string
