// Package testload runs keep-alive HTTP senders against a daemon under test.
// It is for tests only.
package testload

import (
	"net/http"
	"sync"
	"time"
)

// Senders starts n senders, each with an HTTP client of one keep-alive
// connection and the given timeout, calling send(hc, w, i) for sender w and
// i = 0, 1, ... until stop is closed. Wait on the returned group.
func Senders(n int, timeout time.Duration, stop <-chan struct{}, send func(hc *http.Client, w, i int)) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		wg.Go(func() {
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: timeout}
			defer hc.CloseIdleConnections()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				send(hc, w, i)
			}
		})
	}
	return &wg
}
