# A server with two services: every service key shown for "web", the
# defaults for "api".

node_id  = "cyc-1"
data_dir = "/var/lib/cycler"

api {
  token "ops" {
    secret = "0123456789abcdef"
    scopes = ["operator"]
  }
}

service "web" {
  min_live      = 2
  max_parallel  = 3
  failure_limit = "25%"
  drain         = "15s"
  bake_time     = "1m"
  bake_interval = "5s"
  standby       = "refresh"

  breaker {
    consecutive_failures = 5
    cooldown             = "30m"
  }

  timeouts {
    preflight = "1m"
    hide      = "3m"
    deploy    = "20m"
    smoke     = "4m"
    switch    = "90s"
    bake      = "5m"
    done      = "15m"
  }

  smoke "health" {
    path             = "/health"
    status           = [200, 204]
    timeout          = "2s"
    retries          = 3
    backoff_initial  = "250ms"
    backoff_max      = "2s"
    body_matches     = "^ok"
    headers          = { Content-Type = "text/plain", "X-Pool" = "blue" }
    max_body_bytes   = 4096
  }

  smoke "admin-port" {
    kind = "tcp"
    port = 9090
  }

  smoke "script" {
    kind    = "command"
    command = ["/usr/local/bin/check-web", "--quick"]
  }

  bake "home" {
    method           = "HEAD"
    path             = "/"
    host             = "www.example.com"
    body_contains    = "Welcome"
    follow_redirects = true
  }

  schedule "nightly" {
    cron      = "0 3 * * *"
    time_zone = "Europe/Berlin"
    action    = "deploy-staged"
  }

  schedule "refresh" {
    cron   = "@weekly"
    action = "recycle"
  }

  window "weeknights" {
    days      = ["mon", "tue", "wed", "thu"]
    start     = "22:00"
    end       = "24:00"
    time_zone = "Europe/Berlin"
  }

  window "early" {
    start = "00:00"
    end   = "01:30"
  }

  freeze {
    reason = "black friday"
  }
}

service "api" {
}
