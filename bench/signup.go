package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

type benchUser struct {
	Name   string
	Cookie string
}

func signupUser(ctx context.Context, base, name string) (benchUser, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/signup",
		strings.NewReader(url.Values{"username": {name}, "password": {"load-password"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		return benchUser{}, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return benchUser{}, fmt.Errorf("signup %s on %s: status %d", name, base, resp.StatusCode)
	}
	u, _ := url.Parse(base)
	var parts []string
	for _, ck := range jar.Cookies(u) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	return benchUser{Name: name, Cookie: strings.Join(parts, "; ")}, nil
}

// signUp readies cfg.Users users through the first node, 8 at a time,
// named after the run (ld<runID>-<i>) so that runs against the same nodes
// do not collide. It returns the first error.
func (r *loadRun) signUp(ctx context.Context) error {
	r.logf("signing up %d users", r.cfg.Users)
	r.users = make([]benchUser, r.cfg.Users)
	r.runID = strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	sem := make(chan struct{}, 8)
	for i := range r.users {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			u, err := r.tgt.user(ctx, r.urls[0], fmt.Sprintf("ld%s-%d", r.runID, i))
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			r.users[i] = u
		}()
	}
	wg.Wait()
	return firstErr
}
