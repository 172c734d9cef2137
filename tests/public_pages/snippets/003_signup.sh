curl -X POST https://observe.tansohq.com/api/signup \
-H "Content-Type: application/json" \
-d '{
"email": "agent@yourapp.com",
"scopes": ["usage.read", "events.write", "proxy.chat"],
"budget_cents": 5000,
"budget_period": "month"
}'
