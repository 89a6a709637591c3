package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
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
