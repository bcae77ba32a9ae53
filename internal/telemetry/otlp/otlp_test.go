package otlp

import (
	"context"
	"errors"
	"testing"
)

func TestSetupFromEnvironment(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tel, err := Setup(context.Background(), "svc", "v")
	if err != nil || tel.TracerProvider != nil {
		t.Fatalf("no endpoint: exporting %v, %v", tel.TracerProvider != nil, err)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
	if _, err := Setup(context.Background(), "svc", "v"); !errors.Is(err, ErrConfig) {
		t.Fatalf("bad protocol: %v", err)
	}
	for _, proto := range []string{"http/protobuf", "grpc"} {
		t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", proto)
		tel, err := Setup(context.Background(), "svc", "v")
		if err != nil || tel.TracerProvider == nil {
			t.Fatalf("%s: exporting %v, %v", proto, tel.TracerProvider != nil, err)
		}
		_ = tel.Shutdown(context.Background())
	}
	t.Setenv("OTEL_SDK_DISABLED", "true")
	if tel, err := Setup(context.Background(), "svc", "v"); err != nil || tel.TracerProvider != nil {
		t.Fatalf("disabled: %v %v", tel.TracerProvider != nil, err)
	}
}
