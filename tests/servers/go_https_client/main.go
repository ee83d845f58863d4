// An HTTPS client in Go (crypto/tls, net/http; standard library only).
// Usage: go_https_client PORT MARKER...: GET https://127.0.0.1:PORT/req/MARKER
// for each marker on one kept-alive connection, the certificate not checked.
// It waits a second first: the agent finds a Go process started after it
// within half a second, and reads its TLS from then on.
package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	time.Sleep(time.Second)
	transport := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	for _, marker := range os.Args[2:] {
		url := fmt.Sprintf("https://127.0.0.1:%s/req/%s", os.Args[1], marker)
		response, err := client.Get(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		io.Copy(io.Discard, response.Body)
		response.Body.Close()
	}
}
