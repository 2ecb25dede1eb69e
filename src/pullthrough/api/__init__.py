"""HTTP only: parse the request, call one service, render the answer."""
