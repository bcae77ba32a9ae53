// Command wget is the little of busybox wget that the compose file's health
// checks use (wget -qO- URL, wget --spider URL), for the stand-in images
// deploy/compose/local-images.sh builds FROM scratch: the same health checks
// then work with the official images (which have busybox) and the local ones.
// It exits 0 when the URL answers 2xx.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	var url string
	toStdout := false
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-O" && i+1 < len(args):
			i++
			toStdout = args[i] == "-"
		case strings.HasPrefix(a, "-") && strings.Contains(a, "O-"), a == "-O-":
			toStdout = true
		case strings.HasPrefix(a, "-"):
			// -q, --spider, -T: quiet is all this program is.
		default:
			url = a
		}
	}
	if url == "" {
		fmt.Fprintln(os.Stderr, "usage: wget [-q] [-O -] [--spider] URL")
		os.Exit(2)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wget:", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	if toStdout {
		_, _ = io.Copy(os.Stdout, resp.Body)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintln(os.Stderr, "wget: server returned", resp.Status)
		os.Exit(1)
	}
}
