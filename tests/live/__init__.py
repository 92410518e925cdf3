"""Tests against real Jobmon servers (3.6 and 3.2.2) started on 127.0.0.1 (marker ``live``)."""
