// Command ceiling is the yardstick for how fast HTTP alone can go on a
// machine: a Fiber app that answers every webhook with 204 and does nothing
// else. scripts/bench-ingest runs it beside the gateway.
//
// Settings: HTTP_ADDR (default :8080).
package main

import (
	"log"
	"os"

	"github.com/gofiber/fiber/v2"
)

func main() {
	app := fiber.New(fiber.Config{DisableStartupMessage: true, BodyLimit: 1_000_000})
	app.Get("/readyz", func(c *fiber.Ctx) error { return c.SendStatus(fiber.StatusOK) })
	app.Post("/webhooks/spectora", func(c *fiber.Ctx) error { return c.SendStatus(fiber.StatusNoContent) })
	addr := os.Getenv("HTTP_ADDR")
	if addr == "" {
		addr = ":8080"
	}
	log.Fatal(app.Listen(addr))
}
