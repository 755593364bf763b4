module itemsvc

go 1.26
