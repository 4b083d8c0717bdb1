// Command probe is the test container of deploy/local/test-cluster.sh on the real
// node: it reports what a pod sees, one line per fact, then waits for SIGTERM.
//
//	probe           the report, then wait for SIGTERM or SIGINT and exit 0
//	probe version   print "probe ok" and exit (for kubectl exec)
//
// Environment: PROBE_AMQP (host:port of RabbitMQ, through the node's forwarder),
// PROBE_RESOLVE (comma-separated names to look up). Standard library only, built
// static (CGO_ENABLED=0), so its resolver reads /etc/resolv.conf itself.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

const serviceAccount = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println("probe ok")
		return
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	fmt.Printf("probe: uid=%d gid=%d\n", os.Getuid(), os.Getgid())
	routes()
	for _, name := range strings.Split(os.Getenv("PROBE_RESOLVE"), ",") {
		if name != "" {
			resolve(name)
		}
	}
	if addr := os.Getenv("PROBE_AMQP"); addr != "" {
		amqp(addr)
	}
	apiserver()
	fmt.Println("probe: waiting for SIGTERM")
	sig := <-stop
	fmt.Printf("probe: got %v, exiting\n", sig)
}

// routes prints the pod's IPv4 routes ("route 10.88.0.0/16 via 0.0.0.0"), from
// /proc/net/route, whose addresses are little-endian hex.
func routes() {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		fmt.Println("routes: error:", err)
		return
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Scan() // header
	for s.Scan() {
		fl := strings.Fields(s.Text())
		if len(fl) < 8 {
			continue
		}
		dst, gw, mask := hexIP(fl[1]), hexIP(fl[2]), hexIP(fl[7])
		ones, _ := net.IPMask(mask.To4()).Size()
		fmt.Printf("route %v/%d via %v\n", dst, ones, gw)
	}
}

func hexIP(h string) net.IP {
	var v uint32
	fmt.Sscanf(h, "%x", &v)
	return net.IPv4(byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

func resolve(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, name)
	if err != nil {
		fmt.Printf("resolve %s: error: %v\n", name, err)
		return
	}
	fmt.Printf("resolve %s -> %s\n", name, strings.Join(addrs, ","))
}

// amqp sends AMQP 0-9-1's protocol header and expects Connection.Start (a method
// frame of class 10, method 10): RabbitMQ itself answered, not only the forwarder.
func amqp(addr string) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		fmt.Printf("amqp %s: error: %v\n", addr, err)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("AMQP\x00\x00\x09\x01"))
	b := make([]byte, 11)
	if _, err := io.ReadFull(c, b); err != nil {
		fmt.Printf("amqp %s: error: %v\n", addr, err)
		return
	}
	if b[0] == 1 && b[7] == 0 && b[8] == 10 && b[9] == 0 && b[10] == 10 {
		fmt.Printf("amqp %s: Connection.Start\n", addr)
	} else {
		fmt.Printf("amqp %s: unexpected reply % x\n", addr, b)
	}
}

// apiserver calls GET /version as the pod's ServiceAccount at the address every
// in-cluster client uses: KUBERNETES_SERVICE_HOST and _PORT, set by the kubelet.
func apiserver() {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	token, err := os.ReadFile(serviceAccount + "/token")
	if err != nil {
		fmt.Println("apiserver: error:", err)
		return
	}
	ca, err := os.ReadFile(serviceAccount + "/ca.crt")
	if err != nil {
		fmt.Println("apiserver: error:", err)
		return
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	url := "https://" + net.JoinHostPort(host, port) + "/version"
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := client.Do(req)
	if err != nil {
		fmt.Printf("apiserver %s: error: %v\n", url, err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("apiserver %s: %s %s\n", url, resp.Status, strings.Join(strings.Fields(string(body)), ""))
}
