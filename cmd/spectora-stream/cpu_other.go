//go:build !unix

package main

import "time"

// processCPU is not measured here: bench prints no CPU line.
func processCPU() time.Duration { return 0 }
