// A front service in Go for the accuracy benchmark's runtime matrix.
//
// Usage: front_go PORT AUX_PORT LEAF_PORT (FANOUT=2 for two parallel leaf
// calls). Every GET sleeps 0-5 ms, calls AUX_PORT, then LEAF_PORT (FANOUT
// times at once, in goroutines), with the same path, through the shared
// keep-alive http.Client; then answers 200. Prints "ready" once listening.
package main

import (
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func get(port string, path string) error {
	response, err := client.Get("http://127.0.0.1:" + port + path)
	if err != nil {
		return err
	}
	defer response.Body.Close()
	_, err = io.Copy(io.Discard, response.Body)
	return err
}

func main() {
	port, aux, leaf := os.Args[1], os.Args[2], os.Args[3]
	fanout, _ := strconv.Atoi(os.Getenv("FANOUT"))
	if fanout < 1 {
		fanout = 1
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(rand.Intn(5000)) * time.Microsecond)
		if err := get(aux, r.URL.Path); err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		var wg sync.WaitGroup
		failed := false
		var mu sync.Mutex
		for i := 0; i < fanout; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := get(leaf, r.URL.Path); err != nil {
					mu.Lock()
					failed = true
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if failed {
			http.Error(w, "leaf failed", 502)
			return
		}
		fmt.Fprintln(w, "front")
	})
	listener, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		panic(err)
	}
	fmt.Println("ready")
	panic(http.Serve(listener, nil))
}
