package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startRun runs run with args in the background and returns the address it
// logged, the channel run's result arrives on, and a cancel that stops it.
// The address comes from run's own start-up log line, so nothing polls.
func startRun(t *testing.T, args ...string) (addr string, done <-chan error, cancel context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logR, logW := io.Pipe()
	result := make(chan error, 1)
	go func() {
		err := run(ctx, append([]string{"-log-format", "json"}, args...), func(string) string { return "" }, logW)
		logW.Close()
		result <- err
	}()
	addrs := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(logR)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addrs <- line.Addr
			}
		}
		close(addrs)
	}()
	select {
	case addr, ok := <-addrs:
		if !ok {
			cancel()
			t.Fatalf("run exited before listening: %v", <-result)
		}
		t.Cleanup(cancel)
		return addr, result, cancel
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("run did not log a listening address within 10s")
	}
	return "", nil, nil
}

// TestRun starts the real process wiring on a free port, serves a request,
// and checks that cancelling the context shuts down cleanly.
func TestRun(t *testing.T) {
	addr, done, cancel := startRun(t, "-addr", "127.0.0.1:0", "-access-log=false")
	r, _ := http.NewRequest("PUT", "http://"+addr+"/items/foo", strings.NewReader(`{"name":"x"}`))
	r.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("PUT /items/foo on the seeded store: status = %d, want 200", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run returned %v after cancel, want nil", err)
		}
	case <-time.After(shutdownTimeout + 5*time.Second):
		t.Fatal("run did not return after cancel")
	}
}

// TestRunSeedFalse checks that -seed=false starts with an empty store.
func TestRunSeedFalse(t *testing.T) {
	addr, _, _ := startRun(t, "-addr", "127.0.0.1:0", "-seed=false")
	resp, err := http.Get("http://" + addr + "/items")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "{}" {
		t.Errorf("GET /items with -seed=false = %s, want {}", body)
	}
}

// TestRunErrors checks that bad configuration is an error, not a server.
func TestRunErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"address in use", []string{"-addr", busy.Addr().String()}, "address already in use"},
		{"bad log format", []string{"-log-format", "xml"}, "-log-format"},
		{"zero body limit", []string{"-max-body", "0"}, "-max-body"},
		{"unknown flag", []string{"-nope"}, "not defined"},
		{"stray argument", []string{"serve"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			err := run(context.Background(), tt.args, func(string) string { return "" }, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, tt.wantErr)
			}
		})
	}
}

// TestAddrFromEnv checks that $ADDR is the default listen address.
func TestAddrFromEnv(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	getenv := func(k string) string {
		if k == "ADDR" {
			return busy.Addr().String()
		}
		return ""
	}
	err = run(context.Background(), nil, getenv, io.Discard)
	if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Errorf("run with ADDR=%s (in use) = %v, want a bind error naming it", busy.Addr(), err)
	}
}
