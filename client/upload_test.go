package client_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cyclerhq/cycler/client"
)

func TestDoUploadSendsContentLength(t *testing.T) {
	type seen struct {
		length   int64
		chunked  bool
		received string
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{length: r.ContentLength, chunked: len(r.TransferEncoding) > 0, received: string(b)}
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, client.Config{Addr: srv.URL, Token: opSecret})
	const body = "a package body of a known size"
	tests := []struct {
		name        string
		send        func(r io.Reader) (*http.Response, error)
		wantLength  int64
		wantChunked bool
	}{
		{name: "DoUpload", wantLength: int64(len(body)), send: func(r io.Reader) (*http.Response, error) {
			return c.DoUpload(context.Background(), http.MethodPost, "/v1/x", r, int64(len(body)), "application/octet-stream")
		}},
		{name: "DoRaw", wantLength: -1, wantChunked: true, send: func(r io.Reader) (*http.Response, error) {
			return c.DoRaw(context.Background(), http.MethodPost, "/v1/x", r, "application/octet-stream")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A reader whose type hides its length, like an *os.File.
			resp, err := tt.send(io.MultiReader(strings.NewReader(body)))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			s := <-got
			if s.length != tt.wantLength || s.chunked != tt.wantChunked || s.received != body {
				t.Errorf("server saw length %d, chunked %v, body %q; want %d, %v, the body", s.length, s.chunked, s.received, tt.wantLength, tt.wantChunked)
			}
		})
	}
	if _, err := c.DoUpload(context.Background(), http.MethodPost, "/v1/x", strings.NewReader(""), -1, ""); err == nil {
		t.Error("DoUpload accepted a negative size")
	}
}
