// Command coredns is CoreDNS with only the plugins that the local node's Corefile
// (deploy/local/node/Corefile) uses: CoreDNS's own main links all of them, cloud
// providers' clients included. Not generated: `tools.sh regen` keeps this file.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The order in which plugins see a query, as in CoreDNS's plugin.cfg.
var directives = []string{"bind", "ready", "errors", "cache", "kubernetes"}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
