"""The HTTP surfaces: the Starlette app and its routes (the app backends' API, the operators'
admin API and dashboard, metrics, health), and the uvicorn stack that serves it."""
