node_id  = "cyc-1"
data_dir = "/var/lib/cycler"

service "Web" {
  min_live      = 0
  max_paralel   = 4
  failure_limit = "150%"
  drain         = "-1s"
  standby       = "discard"

  breaker {
    consecutive_failures = 0
  }

  timeouts {
    hide = "5s"
  }

  smoke "health" {
    kind = "tcp"
    path = "/health"
  }

  smoke "script" {
    kind    = "command"
    retries = "three"
  }

  bake "home" {
    path    = "/"
    status  = [700]
    timeout = "soon"
    headers = { x-a = "1", X-A = "2" }
  }

  schedule "nightly" {
    cron      = "CRON_TZ=Europe/Berlin 0 3 * * *"
    action    = "deploy"
  }

  schedule "hourly" {
    cron      = "0 * * *"
    time_zone = "Mars/Olympus"
    action    = "recycle"
  }

  window "late" {
    days  = ["mon", "Tue", "mon"]
    start = "22:00"
    end   = "01:00"
  }

  window "noon" {
    start = "12:60"
    end   = "13:00"
  }

  freeze {
  }
}

service "api" {
}

service "api" {
  drain = "1m"
}

api {
  token "ops" {
    secret = "0123456789abcdef"
    scopes = ["operator"]
  }
}
